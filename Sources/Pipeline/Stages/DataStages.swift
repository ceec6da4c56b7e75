import ESM
import Foundation
import ProteinData
import Store

/// Stage 1: reads FASTA and label files (ID / EC columns named by `inputs.id_column` /
/// `inputs.ec_column` or detected), rewrites transferred EC numbers and drops deleted ones when
/// `inputs.enzyme_dat` is given, joins sequences and labels by ID, keeps every unusable record
/// in `rejected_records` with its reason (a label row for a FASTA record the reader rejected
/// names that rejection), keeps sequences whose ECs span several classes in `sequences` with
/// `excluded_reason` (and in `rejected_records`), records input files with size and SHA-256,
/// and leaves a per-file `IngestSummary` on the context.
enum IngestStage: StageImplementation {
    /// The input files' SHA-256 and size, the label level and the optional column names and
    /// `enzyme.dat` (the optional ones only when set, so runs recorded before they existed keep their keys).
    static func parameters(_ ctx: RunContext) throws -> [(name: String, value: String)] {
        let spec = ctx.spec
        var fields: [(name: String, value: String)] = []
        for (role, list) in [("fasta", spec.inputs.fasta), ("labels", spec.inputs.labels)] {
            for (i, p) in list.enumerated() {
                let h = try Hashing.sha256(file: ctx.resolve(p))
                fields.append(("inputs.\(role)[\(i)]", "sha256 \(h.hex), \(h.size) bytes"))
            }
        }
        fields.append(("label_level", String(spec.labelLevel)))
        if let classes = spec.classes { fields.append(("classes", classes.map(\.description).joined(separator: ", "))) }
        if let c = spec.inputs.idColumn { fields.append(("inputs.id_column", c)) }
        if let c = spec.inputs.ecColumn { fields.append(("inputs.ec_column", c)) }
        if let e = spec.inputs.enzymeDat {
            let h = try Hashing.sha256(file: ctx.resolve(e))
            fields.append(("inputs.enzyme_dat", "sha256 \(h.hex), \(h.size) bytes"))
        }
        if let m = spec.inputs.plantedMotifs {
            let h = try Hashing.sha256(file: ctx.resolve(m))
            fields.append(("inputs.planted_motifs", "sha256 \(h.hex), \(h.size) bytes"))
        }
        return fields
    }

    /// What ingest read from the inputs, ready to be committed: the rows of every ingest
    /// table and the lines to print. `read` makes it without writing anything, so `kneuron
    /// run` can check the inputs (and the checkpoint's labels against the classes) before the
    /// first stage, and the stage then commits the same result.
    struct Result {
        var files: [InputFileRecord]
        var classes: [ClassRecord]
        var sequences: [SequenceRecord]
        var excluded: [ExcludedSequenceRecord]
        var rejected: [RejectedRow]
        var planted: [PlantedMotifRecord]
        var summary: IngestSummary
        var log: [String]
        var seconds: Double
    }

    /// Reads, checks and assembles the inputs (nothing is written).
    /// - Throws: reader errors naming the file; `PipelineError.empty` when no sequence is usable
    ///   or a `classes` entry matches none.
    static func read(_ ctx: RunContext) throws -> Result {
        let start = Date()
        var lines: [String] = []
        func note(_ line: String) { lines.append(line) }
        let spec = ctx.spec
        let inputs = spec.inputs
        var files: [InputFileRecord] = []
        var fasta: [(file: String, records: [FastaRecord])] = []
        var labels: [(file: String, records: [LabelRecord])] = []
        var rejected: [RejectedRecord] = []
        var fastaRejected: [RejectedRecord] = []
        var counts: [IngestSummary.File] = []
        var nomenclature: EnzymeNomenclature?
        if let e = inputs.enzymeDat {
            let n = try EnzymeNomenclature(enzymeDatPath: ctx.resolve(e))
            nomenclature = n
            let obsolete = n.entries.values.filter { if case .current = $0 { return false } else { return true } }.count
            note("  \(ctx.resolve(e)): \(n.entries.count) enzyme.dat entries, \(obsolete) transferred or deleted")
        }
        for p in inputs.fasta {
            let path = ctx.resolve(p)
            let h = try Hashing.sha256(file: path)
            files.append(InputFileRecord(path: path, role: "fasta", sizeBytes: h.size, sha256: h.hex))
            let r = try FastaReader.read(path: path)
            fasta.append((path, r.records))
            rejected += r.rejected
            fastaRejected += r.rejected
            counts.append(IngestSummary.File(path: path, role: "fasta", read: r.records.count + r.rejected.count))
            note("  \(path): \(r.records.count) records read, \(r.rejected.count) rejected while reading")
        }
        for p in inputs.labels {
            let path = ctx.resolve(p)
            let h = try Hashing.sha256(file: path)
            files.append(InputFileRecord(path: path, role: "labels", sizeBytes: h.size, sha256: h.hex))
            let r = try LabelFileReader.read(path: path, idColumn: inputs.idColumn, ecColumn: inputs.ecColumn)
            var records = r.records
            var fileRejected = r.rejected
            var rewritten = ""
            if let nomenclature {
                let applied = nomenclature.apply(to: records, file: path, level: spec.labelLevel)
                let changed = applied.records.filter { $0.notes.contains { $0.contains("(enzyme.dat)") } }.count
                rewritten = ", \(changed) rewritten and \(applied.rejected.count) rejected by enzyme.dat"
                records = applied.records
                fileRejected += applied.rejected
            }
            labels.append((path, records))
            rejected += fileRejected
            counts.append(IngestSummary.File(path: path, role: "labels", read: r.records.count + r.rejected.count))
            note("  \(path): \(r.records.count) label rows read, \(r.rejected.count) rejected while reading\(rewritten)")
        }
        var assembled = DatasetAssembler.assemble(fasta: fasta, labels: labels, fastaRejected: fastaRejected, level: spec.labelLevel)
        rejected += assembled.rejected
        if let keep = spec.classes {
            let outside = try ClassFilter.apply(keep, to: &assembled.accepted)
            rejected += outside
            note("  classes \(keep.map(\.description).joined(separator: ", ")): \(outside.count) sequences of other classes rejected")
        }
        guard !assembled.accepted.isEmpty || ctx.allowEmptyIngest else {
            throw PipelineError.empty(stage: "ingest", what: "no sequence could be used (\(rejected.count) rejected); check that FASTA IDs match the label file's Entry column")
        }
        let labelSet = Set(assembled.accepted.map { $0.label })
        // A planted benchmark's motif table, checked against the sequences; its classes are named by their motifs.
        var planted: [PlantedMotifRecord] = []
        if let m = inputs.plantedMotifs {
            let path = ctx.resolve(m)
            let h = try Hashing.sha256(file: path)
            files.append(InputFileRecord(path: path, role: "planted_motifs", sizeBytes: h.size, sha256: h.hex))
            planted = try PlantedDataset.readMotifTable(path: path, sequences: Dictionary(uniqueKeysWithValues: assembled.accepted.map {
                ($0.id, ($0.sequence, $0.label.description))
            }))
            note("  \(path): \(planted.count) planted motifs (\(planted.filter { $0.ecLabel == nil }.count) decoys)")
        }
        let motifNames = Dictionary(planted.compactMap { m in m.ecLabel.map { ($0, "planted motif \(m.pattern)") } }) { a, _ in a }
        let classes = labelSet.sorted().enumerated().map { i, ec in
            ClassRecord(classIndex: i, ecLabel: ec.description,
                        name: inputs.plantedMotifs != nil ? motifNames[ec.description]
                            : spec.labelLevel == 1 ? ec.ecClass.flatMap { ECClassNames.builtinClassNames[$0] } : nil)
        }
        let sequences = assembled.accepted.map { s in
            SequenceRecord(id: s.id, sequence: s.sequence, ecLabel: s.label.description, ecNumbers: s.ecNumbers.map(\.description),
                           sourceFile: s.sourceFile, sourceLine: s.line, notes: s.notes.joined(separator: "; "))
        }
        // Usable sequences without a single class: kept (with their ECs), excluded from training,
        // and also listed in rejected_records with the same reason.
        let excluded = assembled.excluded.map { s in
            ExcludedSequenceRecord(id: s.id, sequence: s.sequence, ecNumbers: s.ecNumbers.map(\.description),
                                   sourceFile: s.sourceFile, sourceLine: s.line, notes: s.notes.joined(separator: "; "), reason: s.reason)
        }
        let rows = rejected.map { RejectedRow(file: $0.file, line: $0.line ?? 0, recordID: $0.id ?? "", reason: $0.reason) }
        let summary = IngestSummary(files: counts, sequences: sequences.map { ($0.sourceFile) },
                                    rejected: rows.map { ($0.file, $0.reason) }, classes: classes.count, excluded: excluded.count)
        // The log line's counts by reason: the summary's per-file counts, added up.
        let reasons = summary.files.reduce(into: [String: Int]()) { total, f in
            for (kind, n) in f.rejectedByReason { total[kind, default: 0] += n }
        }
        if !excluded.isEmpty {
            note("  \(excluded.count) sequences kept in the database but excluded from training (their ECs give different labels at level \(spec.labelLevel))")
        }
        note("  accepted \(sequences.count) sequences in \(classes.count) classes; rejected \(rejected.count)"
            + (reasons.isEmpty ? "" : ": " + reasons.sorted { ($0.value, $1.key) > ($1.value, $0.key) }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")))
        return Result(files: files, classes: classes, sequences: sequences, excluded: excluded, rejected: rows, planted: planted,
                      summary: summary, log: lines, seconds: Date().timeIntervalSince(start))
    }

    static func run(_ ctx: RunContext, key: String) throws -> Int {
        let start = Date()
        let r = try ctx.takePreread() ?? read(ctx)
        for line in r.log { ctx.log(line) }
        ctx.ingestSummary = r.summary
        let n = r.sequences.count + r.excluded.count + r.rejected.count
        try ctx.db.commitIngest(files: r.files, classes: r.classes, sequences: r.sequences, excluded: r.excluded, rejected: r.rejected, plantedMotifs: r.planted,
                                ledger: StageRecord(stage: "ingest", contentKey: key, rowsWritten: n, seconds: r.seconds + Date().timeIntervalSince(start)))
        return n
    }
}

/// The spec's `classes`: which labels a run keeps.
enum ClassFilter {
    /// True when `label` (at the run's level) is `entry` or lies under it (`3.4.-.-` under `3`).
    static func matches(_ label: ECNumber, _ entry: ECNumber) -> Bool {
        label.truncated(toLevel: entry.knownDepth) == entry
    }

    /// Removes from `accepted` the sequences whose label matches no entry of `keep` and returns
    /// them as rejections (file, line, ID, reason naming the label and the list).
    /// - Throws: `PipelineError.empty` when an entry matches no accepted sequence (a typo, or a
    ///   class the data lacks), naming the classes the data has.
    static func apply(_ keep: [ECNumber], to accepted: inout [LabeledSequence]) throws -> [RejectedRecord] {
        let list = keep.map(\.description).joined(separator: ", ")
        let present = Set(accepted.map(\.label))
        for entry in keep where !present.contains(where: { matches($0, entry) }) {
            throw PipelineError.empty(stage: "ingest", what: "classes lists \(entry) but no accepted sequence has that label; the data's classes are \(present.sorted().map(\.description).joined(separator: ", "))")
        }
        var out: [RejectedRecord] = []
        accepted.removeAll { s in
            guard !keep.contains(where: { matches(s.label, $0) }) else { return false }
            out.append(RejectedRecord(file: s.sourceFile, line: s.line, id: s.id, reason: "class \(s.label) is not among the spec's classes (\(list))"))
            return true
        }
        return out
    }
}

/// Stage 2: ESM-2 tokens (`<cls>` residues `<eos>`), cropped by the spec's policy, for the
/// sequences used for training (`RunDatabase.sequences()`: excluded sequences are skipped, so
/// split never sees them). A sequence the `reject` policy refuses is reported and left out of
/// later stages.
enum TokenizeStage: StageImplementation {
    /// The maximum length and crop policy.
    static func parameters(_ ctx: RunContext) throws -> [(name: String, value: String)] {
        [("model.max_length", String(ctx.spec.model.maxLength)), ("model.crop", ctx.spec.model.crop.rawValue)]
    }

    static func run(_ ctx: RunContext, key: String) throws -> Int {
        let start = Date()
        let tokenizer = Tokenizer(maxLength: ctx.spec.model.maxLength, cropPolicy: ctx.spec.model.crop)
        var tokens: [TokenRecord] = []
        var refused: [RejectedRow] = []
        for s in try ctx.db.sequences() {
            do {
                let t = try tokenizer.encode(s.sequence)
                tokens.append(TokenRecord(sequenceID: s.id, ids: t.ids, residueStart: t.residueStart, residueEnd: t.residueEnd, originalLength: t.originalLength))
            } catch {
                refused.append(RejectedRow(file: s.sourceFile, line: s.sourceLine, recordID: s.id, reason: "tokenize: \(error)"))
                ctx.log("  \(s.id): not tokenized: \(error)")
            }
        }
        let excluded = try ctx.db.excludedSequences().count
        if excluded > 0 { ctx.log("  \(excluded) sequences excluded from training at ingest are not tokenized") }
        let cropped = tokens.filter(\.cropped).count
        ctx.log("  \(tokens.count) sequences tokenized, \(cropped) cropped to \(ctx.spec.model.maxLength) tokens (policy \(ctx.spec.model.crop.rawValue)), \(refused.count) refused (kept in rejected_records)")
        try ctx.db.commitTokens(tokens, refused: refused, ledger: StageRecord(stage: "tokenize", contentKey: key, rowsWritten: tokens.count, seconds: Date().timeIntervalSince(start)))
        return tokens.count
    }
}

/// Stage 3: stratified train/select/test split with a seed; identical sequences are kept
/// together (grouped by sequence before assignment), so they never straddle splits.
enum SplitStage: StageImplementation {
    /// Every `split` key.
    static func parameters(_ ctx: RunContext) throws -> [(name: String, value: String)] {
        flatten(canonicalJSON(ctx.spec.split), prefix: "split")
    }

    static func run(_ ctx: RunContext, key: String) throws -> Int {
        let start = Date()
        let s = ctx.spec.split
        let tokens = try ctx.db.tokens()
        let sequences = try ctx.db.sequences().filter { tokens[$0.id] != nil }
        let assignment = assign(sequences.map { (id: $0.id, sequence: $0.sequence, label: $0.ecLabel) },
                                fractions: (s.train, s.select, s.test), seed: s.seed)
        var counts: [String: Int] = [:]
        for v in assignment.values { counts[v, default: 0] += 1 }
        let selectOn = s.selectOn.split.rawValue
        ctx.log("  train \(counts["train"] ?? 0), select \(counts["select"] ?? 0), test \(counts["test"] ?? 0); neurons are selected on the \(selectOn) split"
                + (s.selectOn == .test ? " (the paper's protocol: selection sees the test set)" : ""))
        try check(sequences.map { (id: $0.id, sequence: $0.sequence, label: $0.ecLabel) }, s, assignment: assignment)
        try ctx.db.commitSplits(assignment, ledger: StageRecord(stage: "split", contentKey: key, rowsWritten: assignment.count, seconds: Date().timeIntervalSince(start)))
        return assignment.count
    }

    /// The split's requirements on `items` (the sequences to split): at least 2 classes, and no
    /// empty train, test or (unless `select` is 0) select split under `spec`'s fractions.
    /// - Throws: `PipelineError.empty` naming what to change.
    static func check(_ items: [(id: String, sequence: String, label: String)], _ spec: SplitSpec, assignment: [String: String]? = nil) throws {
        let classCount = Set(items.map(\.label)).count
        guard classCount >= 2 else {
            throw PipelineError.empty(stage: "split", what: "the sequences span \(classCount) class(es); a classifier needs at least 2 (check label_level, classes and the label files)")
        }
        let assigned = assignment ?? assign(items, fractions: (spec.train, spec.select, spec.test), seed: spec.seed)
        var counts: [String: Int] = [:]
        for v in assigned.values { counts[v, default: 0] += 1 }
        // With select_on: test and select: 0 there is no select split (the paper's protocol).
        for name in ["train", "select", "test"] where counts[name, default: 0] == 0 && !(name == "select" && spec.select == 0) {
            throw PipelineError.empty(stage: "split", what: "the \(name) split would be empty (\(items.count) sequences, fractions \(spec.train)/\(spec.select)/\(spec.test)); use more data or larger fractions")
        }
    }

    /// Assigns groups of identical sequences to splits, per class: groups are shuffled with
    /// the seed, then filled into train/select/test to the fractions' cumulative targets
    /// (largest-remainder rounding per class). Returns sequence id -> split.
    static func assign(_ items: [(id: String, sequence: String, label: String)], fractions: (Double, Double, Double), seed: UInt64) -> [String: String] {
        // Group identical sequences; a group's class is its first member's (members of a
        // group share a sequence, so normally a label too).
        var groups: [String: [Int]] = [:]
        for (i, it) in items.enumerated() { groups[it.sequence, default: []].append(i) }
        var byClass: [String: [[Int]]] = [:]
        for g in groups.values.sorted(by: { items[$0[0]].id < items[$1[0]].id }) {
            byClass[items[g[0]].label, default: []].append(g)
        }
        var out: [String: String] = [:]
        var rng = SplitMix64(seed: seed)
        for label in byClass.keys.sorted() {
            var gs = byClass[label]!
            rng.shuffle(&gs)
            let total = Double(gs.reduce(0) { $0 + $1.count })
            let trainTarget = (total * fractions.0).rounded()
            let selectTarget = (total * (fractions.0 + fractions.1)).rounded()
            var filled = 0.0
            for g in gs {
                let split = filled < trainTarget ? "train" : filled < selectTarget ? "select" : "test"
                for i in g { out[items[i].id] = split }
                filled += Double(g.count)
            }
        }
        return out
    }
}

