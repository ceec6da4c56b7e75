import Foundation
import ProteinData
import Store
import Yams

/// What ingest made of each input file: records read, sequences accepted from it, records
/// rejected from it (by kind of reason), and the rest (label rows that labelled sequences of
/// another file, and duplicates merged into another copy with a note).
public struct IngestSummary: Sendable, Equatable {
    /// Counts of one input file.
    public struct File: Sendable, Equatable {
        /// The path as resolved (absolute for `kneuron ingest` without a spec).
        public var path: String
        /// `fasta` or `labels`.
        public var role: String
        /// Records the reader saw: FASTA header lines (plus one for stray text before the first
        /// header), or non-blank label rows after the header. nil when only the database's
        /// record is known (ingest ran in an earlier process).
        public var read: Int?
        /// Sequences accepted with this file as their source (FASTA record, or table row for
        /// sequences that came only from a combined label table).
        public var accepted: Int = 0
        /// Rejected records of this file by kind of reason (`IngestSummary.reasonKind`).
        public var rejectedByReason: [String: Int] = [:]

        /// Creates the counts of a file before assembly (`accepted`, `rejected` filled in later).
        public init(path: String, role: String, read: Int?) {
            self.path = path
            self.role = role
            self.read = read
        }

        /// All rejected records of this file.
        public var rejected: Int { rejectedByReason.values.reduce(0, +) }
        /// `read - accepted - rejected`: label rows joined to another file's sequences, and
        /// duplicate records kept once under another copy; nil when `read` is unknown.
        public var joinedOrMerged: Int? { read.map { $0 - accepted - rejected } }
    }

    /// Per input file, FASTA files first, in input order.
    public var files: [File]
    /// Accepted sequences in total.
    public var accepted: Int
    /// Rejected records in total (including any not tied to an input file).
    public var rejected: Int
    /// Classes at the run's label level.
    public var classes: Int
    /// Sequences kept in the database but excluded from training (ECs span several classes);
    /// each is also counted among the rejected records of its file.
    public var excluded: Int

    /// Fills `files` with the accepted and rejected counts; `sequences` are the accepted
    /// sequences' source files, `rejected` the rejections' (file, reason), `excluded` the number
    /// of sequences kept but excluded from training.
    public init(files: [File], sequences: [String], rejected: [(file: String, reason: String)], classes: Int, excluded: Int = 0) {
        var byPath = Dictionary(uniqueKeysWithValues: files.enumerated().map { ($1.path, $0) })
        var out = files
        for s in sequences { if let i = byPath[s] { out[i].accepted += 1 } }
        for r in rejected {
            if byPath[r.file] == nil {
                byPath[r.file] = out.count
                out.append(File(path: r.file, role: "?", read: nil))
            }
            out[byPath[r.file]!].rejectedByReason[Self.reasonKind(r.reason), default: 0] += 1
        }
        self.files = out
        self.accepted = sequences.count
        self.rejected = rejected.count
        self.classes = classes
        self.excluded = excluded
    }

    /// The summary of the ingest recorded in `db` (reads are unknown: the ledger does not keep
    /// them). Rejections of later stages (`tokenize: ...`) are left out.
    /// - Throws: `StoreError` when the database cannot be read.
    public static func recorded(in db: RunDatabase) throws -> IngestSummary {
        let files = try db.inputFiles().map { File(path: $0.path, role: $0.role, read: nil) }
        let rejected = try db.rejectedRecords().filter { !$0.reason.hasPrefix("tokenize:") }
        return IngestSummary(files: files, sequences: try db.sequences().map(\.sourceFile),
                             rejected: rejected.map { ($0.file, $0.reason) }, classes: try db.classes().count,
                             excluded: try db.excludedSequences().count)
    }

    /// The reason without record-specific details, for counting: text before the first `:`,
    /// `(` or `;` (after a `sequence column: ` or `tokenize: ` prefix, which is kept), and before
    /// a quoted value or position when two or more words precede it
    /// ("unknown residue 'J' at position 3" -> "unknown residue"); "label for a sequence rejected
    /// in FILE line N: ..." counts as "label for a rejected sequence".
    public static func reasonKind(_ reason: String) -> String {
        if reason.hasPrefix("label for a sequence rejected in ") { return "label for a rejected sequence" }
        for prefix in ["sequence column: ", "tokenize: "] where reason.hasPrefix(prefix) {
            return prefix + Self.reasonKind(String(reason.dropFirst(prefix.count)))
        }
        var kind = reason
        if let cut = kind.firstIndex(where: { $0 == ":" || $0 == "(" || $0 == ";" }) { kind = String(kind[..<cut]) }
        for marker in [" '", " at position", " byte 0x"] {
            if let r = kind.range(of: marker), kind[..<r.lowerBound].split(separator: " ").count >= 2 {
                kind = String(kind[..<r.lowerBound])
            }
        }
        return kind.trimmingCharacters(in: .whitespaces)
    }

    /// A plain-text table: one line per file (role, read, accepted, joined/merged, rejected),
    /// the rejections by reason under it, and a total line.
    public var text: String {
        func pad(_ s: String, _ n: Int) -> String { s.padding(toLength: max(n, s.count), withPad: " ", startingAt: 0) + " " }
        func num(_ v: Int?) -> String { v.map(String.init) ?? "-" }
        func right(_ s: String, _ n: Int) -> String { String(repeating: " ", count: max(0, n - s.count)) + s + " " }
        let width = max(4, files.map(\.path.count).max() ?? 4)
        var out = pad("file", width) + pad("role", 7) + right("read", 7) + right("accepted", 9) + right("joined", 7) + right("rejected", 9) + "\n"
        for f in files {
            out += pad(f.path, width) + pad(f.role, 7) + right(num(f.read), 7) + right(String(f.accepted), 9)
                + right(num(f.joinedOrMerged), 7) + right(String(f.rejected), 9) + "\n"
            for (kind, n) in f.rejectedByReason.sorted(by: { ($0.value, $1.key) > ($1.value, $0.key) }) {
                out += "    \(n) \(kind)\n"
            }
        }
        out += "total: \(accepted) sequences accepted in \(classes) classes, \(rejected) records rejected (every one in rejected_records with file, line, ID and reason)\n"
        if excluded > 0 {
            out += "\(excluded) of the rejected sequences are kept in the database but excluded from training (sequences.excluded_reason: their ECs give different labels at the label level)\n"
        }
        out += "joined = label rows that labelled another file's sequences, or duplicates kept once under another copy (noted)\n"
        return out
    }
}

/// `kneuron ingest --fasta F... --labels L... --db PATH` without a spec: the pipeline spec
/// this amounts to, so that the ingest stage runs (and is recorded in the ledger) exactly as
/// in `kneuron run`. A later spec with the same input files (same contents, same order),
/// `label_level`, `inputs.id_column` / `inputs.ec_column` and `inputs.enzyme_dat` continues
/// the run; any other is refused by the ledger, naming what differs.
public struct IngestRequest: Sendable, Equatable {
    /// FASTA files, as given (relative to the working directory).
    public var fasta: [String]
    /// Label files, at least one.
    public var labels: [String]
    /// ID column of every label file; nil = detected.
    public var idColumn: String?
    /// EC column of every label file; nil = detected.
    public var ecColumn: String?
    /// ExPASy `enzyme.dat`; nil = labels used as written.
    public var enzymeDat: String?
    /// EC level of the class label, 1...4.
    public var labelLevel: Int
    /// The run database.
    public var databasePath: String

    /// Creates a request (checked by `spec()`).
    public init(fasta: [String], labels: [String], idColumn: String? = nil, ecColumn: String? = nil,
                enzymeDat: String? = nil, labelLevel: Int = 1, databasePath: String) {
        self.fasta = fasta
        self.labels = labels
        self.idColumn = idColumn
        self.ecColumn = ecColumn
        self.enzymeDat = enzymeDat
        self.labelLevel = labelLevel
        self.databasePath = databasePath
    }

    /// The equivalent spec (paths made absolute against the working directory; name = the
    /// database file's name without extension) and its YAML, recorded in the `run` table.
    /// - Throws: `SpecError.invalid` for no label file, a file listed twice, a level outside
    ///   1...4 or an empty column name, naming the option.
    public func spec() throws -> (spec: PipelineSpec, yaml: String) {
        guard !labels.isEmpty else { throw SpecError.invalid(path: "--labels", message: "give at least one label file") }
        guard (1...4).contains(labelLevel) else {
            throw SpecError.invalid(path: "--label-level", message: "expected 1...4 (1 = EC class), got \(labelLevel)")
        }
        let cwd = FileManager.default.currentDirectoryPath
        func absolute(_ p: String) -> String {
            let full = p.hasPrefix("/") ? p : (cwd as NSString).appendingPathComponent(p)
            return (full as NSString).standardizingPath
        }
        let all = (fasta + labels + (enzymeDat.map { [$0] } ?? [])).map(absolute)
        var seen = Set<String>()
        for p in all where !seen.insert(p).inserted {
            throw SpecError.invalid(path: "--fasta/--labels/--enzyme-dat", message: "\(p) is given twice; give each file once")
        }
        for (option, value) in [("--id-column", idColumn), ("--ec-column", ecColumn)] {
            if let v = value, v.trimmingCharacters(in: .whitespaces).isEmpty {
                throw SpecError.invalid(path: option, message: "expected a non-empty column name")
            }
        }
        if let i = idColumn, let e = ecColumn, LabelFileReader.normaliseColumnName(i) == LabelFileReader.normaliseColumnName(e) {
            throw SpecError.invalid(path: "--ec-column", message: "'\(e)' is also the --id-column; name two different columns")
        }
        var base = ((databasePath as NSString).lastPathComponent as NSString).deletingPathExtension
        if base.isEmpty { base = "ingest" }
        var spec = PipelineSpec(name: base, inputs: InputsSpec(fasta: fasta.map(absolute), labels: labels.map(absolute),
                                                               idColumn: idColumn, ecColumn: ecColumn, enzymeDat: enzymeDat.map(absolute)))
        spec.labelLevel = labelLevel
        struct Rendered: Encodable {
            var name: String
            var inputs: InputsSpec
            var label_level: Int
        }
        let body = (try? YAMLEncoder().encode(Rendered(name: spec.name, inputs: spec.inputs, label_level: labelLevel))) ?? ""
        let yaml = "# written by `kneuron ingest` without a spec; a spec with these inputs and label_level continues this run\n" + body
        return (spec, yaml)
    }
}
