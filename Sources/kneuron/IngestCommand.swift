import ArgumentParser
import Foundation
import Pipeline

/// `kneuron ingest SPEC` (the pipeline's first stage) or `kneuron ingest --fasta F... --labels
/// L... --db PATH` (the same stage without a spec). Prints the per-file summary either way.
struct IngestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ingest",
        abstract: "Read FASTA and EC label files into the database.",
        discussion: """
            With a spec: the spec's ingest stage. Without one: --labels and --db are required and the files \
            are ingested as a spec with these inputs would be; the stage is recorded in the ledger, so a \
            later `kneuron run SPEC --db PATH` whose spec has the same files (same contents, same order), \
            label_level, id_column, ec_column and enzyme_dat continues from it, and any other spec is \
            refused naming what differs. Prints read / accepted / joined / rejected (by reason) per file. \
            Exits non-zero only when a file cannot be read at all (or the database refuses the ingest); \
            unusable records are kept in rejected_records.
            """)

    @Argument(help: "Pipeline spec (YAML); omit it and give --labels and --db instead.")
    var spec: String?

    @Option(help: "Database path (with a spec the default is runs/<spec name>.sqlite; required without one).")
    var db: String?

    @Option(name: .customLong("force"), help: "Redo ingest (discards it and every later stage); the only stage allowed here is ingest.")
    var force: String?

    @Flag(help: "No progress output on stderr.")
    var quiet = false

    @Option(parsing: .upToNextOption, help: "FASTA files (without a spec).")
    var fasta: [String] = []

    @Option(parsing: .upToNextOption, help: "EC label files: UniProt TSV, the combined table, CSV (without a spec).")
    var labels: [String] = []

    @Option(help: "Name of the ID column of every label file (default: detected, e.g. Entry, id, accession).")
    var idColumn: String?

    @Option(help: "Name of the EC column of every label file (default: detected, e.g. EC number, ec_number).")
    var ecColumn: String?

    @Option(help: "ExPASy enzyme.dat: follow transferred EC numbers, flag deleted ones.")
    var enzymeDat: String?

    @Option(help: "EC level of the class label, 1 (EC class, default) ... 4 (full number).")
    var labelLevel: Int?

    func validate() throws {
        if let force, force != Stage.ingest.rawValue {
            throw ValidationError("`kneuron ingest --force` can only redo ingest; use `kneuron run SPEC --force \(force)` to redo \(force) and the stages after it")
        }
        let standalone = !fasta.isEmpty || !labels.isEmpty || idColumn != nil || ecColumn != nil || enzymeDat != nil || labelLevel != nil
        if spec != nil && standalone {
            throw ValidationError("give either a pipeline spec or --fasta/--labels/--id-column/--ec-column/--enzyme-dat/--label-level, not both: with a spec those are its `inputs` and `label_level` keys")
        }
        if spec == nil {
            if labels.isEmpty { throw ValidationError("give a pipeline spec, or --labels L... (and --fasta F..., --db PATH) to ingest without one") }
            if db == nil { throw ValidationError("without a spec, give the database to write: --db PATH (e.g. runs/NAME.sqlite)") }
        }
    }

    func run() throws {
        let runner: PipelineRunner
        if let spec {
            let loaded = try PipelineSpec.load(path: spec)
            runner = try openRunner(spec: loaded, specPath: spec, db: db ?? "runs/\(loaded.name).sqlite", force: force, quiet: quiet)
        } else {
            let request = IngestRequest(fasta: fasta, labels: labels, idColumn: idColumn, ecColumn: ecColumn,
                                        enzymeDat: enzymeDat, labelLevel: labelLevel ?? 1, databasePath: db!)
            let built = try request.spec()
            runner = try openRunner(spec: built.spec, specPath: "kneuron ingest (no spec)", specYAML: built.yaml,
                                    db: db!, force: force, quiet: quiet)
            runner.context.allowEmptyIngest = true
        }
        let outcome = try runner.run([.ingest])
        if let summary = runner.context.ingestSummary, outcome.first?.ran == true {
            print(summary.text, terminator: "")
            print("written to \(runner.context.db.path)")
        } else {
            print("nothing to do: ingest is already recorded in \(runner.context.db.path) with the same inputs and parameters (use --force ingest to redo it); recorded:")
            print(try IngestSummary.recorded(in: runner.context.db).text, terminator: "")
        }
    }
}
