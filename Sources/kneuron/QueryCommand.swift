import ArgumentParser
import Foundation
import Store

/// `kneuron query --db PATH "SQL"`: read-only SQL over a run's database.
struct QueryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "query",
        abstract: "Run one read-only SQL statement against a run's database.",
        discussion: "Statements that write are refused. Views: neuron_scores (the best-ranked 1,000,000 of each set), all_scores (every score, decoded from score_rows), selection_members, top_neurons, class_top_neurons, neuron_across_methods, kept_density, accuracy_table; evidence tables: curves, curve_auc, significance (docs/schema.md)."
    )
    enum Format: String, ExpressibleByArgument { case table, csv, json }

    @Option(help: "Database path.") var db: String
    @Option(help: "Output format: table, csv or json.") var format: Format = .table
    @Argument(help: "SQL statement.") var sql: String

    func run() throws {
        let database = try RunDatabase(path: db, readOnly: true)
        if let pending = try? database.pendingMigrations(), !pending.isEmpty {
            FileHandle.standardError.write(Data(("note: \(db) has the schema of an older kneuron (migrations \(pending.joined(separator: ", ")) not applied); "
                + "the query runs on that schema. Any writing command, e.g. `kneuron run SPEC --db \(db)`, migrates it.\n").utf8))
        }
        let result = try database.query(sql)
        switch format {
        case .csv:
            print(result.columns.map(csvField).joined(separator: ","))
            for r in result.rows { print(r.map { csvField($0 ?? "") }.joined(separator: ",")) }
        case .json:
            let objects: [[String: Any]] = result.typedRows.map { row in
                Dictionary(zip(result.columns, row.map { cell -> Any in
                    guard let cell else { return NSNull() }
                    if let d = cell as? Double, !d.isFinite { return String(d) }   // JSON has no NaN/inf
                    return cell
                }), uniquingKeysWith: { a, _ in a })
            }
            let data = try JSONSerialization.data(withJSONObject: objects, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        case .table:
            let cells = [result.columns] + result.rows.map { $0.map { $0 ?? "NULL" } }
            let widths = result.columns.indices.map { c in cells.map { $0[c].count }.max() ?? 0 }
            for (i, r) in cells.enumerated() {
                print(r.enumerated().map { $1.padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(separator: "  "))
                if i == 0 { print(widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ")) }
            }
        }
    }

    func csvField(_ s: String) -> String {
        s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s
    }
}
