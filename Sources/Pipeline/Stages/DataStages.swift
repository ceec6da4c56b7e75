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

    static func run(_ ctx: RunContext, key: String) throws -> Int {
        let start = Date()
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
            ctx.log("  \(ctx.resolve(e)): \(n.entries.count) enzyme.dat entries, \(obsolete) transferred or deleted")
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
            ctx.log("  \(path): \(r.records.count) records read, \(r.rejected.count) rejected while reading")
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
            ctx.log("  \(path): \(r.records.count) label rows read, \(r.rejected.count) rejected while reading\(rewritten)")
        }
        let assembled = DatasetAssembler.assemble(fasta: fasta, labels: labels, fastaRejected: fastaRejected, level: spec.labelLevel)
        rejected += assembled.rejected
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
            ctx.log("  \(path): \(planted.count) planted motifs (\(planted.filter { $0.ecLabel == nil }.count) decoys)")
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
        ctx.ingestSummary = summary
        // The log line's counts by reason: the summary's per-file counts, added up.
        let reasons = summary.files.reduce(into: [String: Int]()) { total, f in
            for (kind, n) in f.rejectedByReason { total[kind, default: 0] += n }
        }
        if !excluded.isEmpty {
            ctx.log("  \(excluded.count) sequences kept in the database but excluded from training (their ECs give different labels at level \(spec.labelLevel))")
        }
        ctx.log("  accepted \(sequences.count) sequences in \(classes.count) classes; rejected \(rejected.count)"
            + (reasons.isEmpty ? "" : ": " + reasons.sorted { ($0.value, $1.key) > ($1.value, $0.key) }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")))
        let n = sequences.count + excluded.count + rows.count
        try ctx.db.commitIngest(files: files, classes: classes, sequences: sequences, excluded: excluded, rejected: rows, plantedMotifs: planted,
                                ledger: StageRecord(stage: "ingest", contentKey: key, rowsWritten: n, seconds: Date().timeIntervalSince(start)))
        return n
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
        ctx.log("  train \(counts["train"] ?? 0), select \(counts["select"] ?? 0), test \(counts["test"] ?? 0)")
        let classCount = Set(sequences.map(\.ecLabel)).count
        guard classCount >= 2 else {
            throw PipelineError.empty(stage: "split", what: "the tokenized sequences span \(classCount) class(es); a classifier needs at least 2 (check label_level and the label files)")
        }
        for name in ["train", "select", "test"] where counts[name, default: 0] == 0 {
            throw PipelineError.empty(stage: "split", what: "the \(name) split would be empty (\(sequences.count) tokenized sequences, fractions \(s.train)/\(s.select)/\(s.test)); use more data or larger fractions")
        }
        try ctx.db.commitSplits(assignment, ledger: StageRecord(stage: "split", contentKey: key, rowsWritten: assignment.count, seconds: Date().timeIntervalSince(start)))
        return assignment.count
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

