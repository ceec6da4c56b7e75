import Foundation

/// A sequence joined with its EC label, ready for tokenization.
///
/// `ecNumbers` are all ECs of the label row; `label` their common truncation at the level the
/// dataset was assembled at (1 = EC class); `sourceFile`/`line` locate the sequence (the FASTA
/// header, or the label-table row when the sequence came from a combined table); `notes`
/// collect what readers and assembly changed or merged.
public struct LabeledSequence: Sendable, Equatable {
    /// Sequence ID (FASTA ID / accession, or the label table's ID for table-only sequences).
    public var id: String
    /// Residues, uppercase (20 standard letters + X B Z U O).
    public var sequence: String
    /// Every EC number of the sequence's label row.
    public var ecNumbers: [ECNumber]
    /// The class label: the known ECs truncated to the assembly level (e.g. `3.-.-.-` at level 1).
    public var label: ECNumber
    /// File the sequence was read from (the FASTA file, or the label table for table-only sequences).
    public var sourceFile: String
    /// 1-based line of the FASTA header, or of the label-table row for table-only sequences.
    public var line: Int
    /// What readers and assembly changed or merged, one sentence each.
    public var notes: [String]

    /// Creates a sequence from its fields.
    public init(id: String, sequence: String, ecNumbers: [ECNumber], label: ECNumber,
                sourceFile: String, line: Int, notes: [String] = []) {
        self.id = id
        self.sequence = sequence
        self.ecNumbers = ecNumbers
        self.label = label
        self.sourceFile = sourceFile
        self.line = line
        self.notes = notes
    }
}

/// A usable sequence that stays in the dataset but is excluded from training, with the reason.
///
/// Today the only reason is a label row whose ECs give different labels at the assembly level
/// (`"ECs span several classes at level 1: 4.1.2.19; 1.2.1.22"`, or at levels 2-4
/// `"ECs give different labels at level 2: 1.1.1.1; 1.2.1.1"`): the protein and all its EC
/// numbers are kept (the run database stores it in `sequences` with `excluded_reason` and its
/// ECs in `labels`), but it has no single class, so tokenize and split leave it out.
public struct ExcludedSequence: Sendable, Equatable {
    /// Sequence ID (FASTA ID / accession, or the label table's ID for table-only sequences).
    public var id: String
    /// Residues, uppercase (20 standard letters + X B Z U O).
    public var sequence: String
    /// Every EC number of the sequence's label row.
    public var ecNumbers: [ECNumber]
    /// File the sequence was read from (the FASTA file, or the label table for table-only sequences).
    public var sourceFile: String
    /// 1-based line of the FASTA header, or of the label-table row for table-only sequences.
    public var line: Int
    /// What readers and assembly changed or merged, one sentence each.
    public var notes: [String]
    /// Why it is excluded from training (the same sentence as its `RejectedRecord`).
    public var reason: String

    /// Creates an excluded sequence from its fields.
    public init(id: String, sequence: String, ecNumbers: [ECNumber], sourceFile: String, line: Int,
                notes: [String] = [], reason: String) {
        self.id = id
        self.sequence = sequence
        self.ecNumbers = ecNumbers
        self.sourceFile = sourceFile
        self.line = line
        self.notes = notes
        self.reason = reason
    }
}

/// Joins FASTA sequences with label rows by ID and applies the dataset rules.
public enum DatasetAssembler {
    /// Joins sequences with labels by ID and applies the rules below; `level` 1...4 (1 = EC class).
    ///
    /// Rules (each rejection carries file, line, id and one of these reasons):
    /// - a sequence with no label row: "no EC label";
    /// - a label row whose ID has no FASTA record and no table sequence: "label without sequence",
    ///   or, when a FASTA reader rejected a record with that ID (`fastaRejected`), "label for a
    ///   sequence rejected in FILE line N: REASON" naming the first such rejection;
    /// - an empty sequence: "empty sequence";
    /// - ECs that disagree at a known level `<= level`: "ECs span several classes at level 1: a; b"
    ///   at level 1, "ECs give different labels at level N: a; b" at levels 2-4;
    ///   the sequence is usable, so it is also returned in `excluded` (kept in the database,
    ///   excluded from training) besides its rejection;
    /// - ECs none of which is known down to `level` (e.g. `1.-.-.-` at level 2): "ECs unknown at level N: ...";
    /// - the same ID in several FASTA records with different sequences: ALL copies rejected, each
    ///   naming another copy's file:line (the ID's label rows are rejected too);
    ///   with the same sequence: kept once, a note names the other copies;
    /// - the same ID in several label rows with different EC sets: all rows rejected (and the
    ///   ID's sequences); with the same EC set: kept once, noted;
    /// - a combined-table sequence is used when no FASTA record has the ID; when both exist and
    ///   differ, both the FASTA record and the label row are rejected.
    /// `fastaRejected` are the FASTA readers' rejections (only used to name the cause above).
    /// ECs less specific than `level` are ignored when another EC of the row is known at `level`
    /// and agrees with them (noted). The label is the truncation to `level` of the known ECs.
    /// Accepted and excluded records come in FASTA order, then table-only records in label order.
    /// An invalid `level` rejects every input record, naming the valid range.
    ///
    /// - Returns: `accepted`, the sequences for training; `excluded`, usable sequences excluded
    ///   from training (each also in `rejected` with the same reason); `rejected`, every record
    ///   that cannot be used for training, with file, line, id and reason.
    public static func assemble(fasta: [(file: String, records: [FastaRecord])],
                                labels: [(file: String, records: [LabelRecord])],
                                fastaRejected: [RejectedRecord] = [],
                                level: Int) -> (accepted: [LabeledSequence], excluded: [ExcludedSequence], rejected: [RejectedRecord]) {
        var rejected: [RejectedRecord] = []
        var excluded: [ExcludedSequence] = []
        guard (1...4).contains(level) else {
            let reason = "invalid EC level \(level): pass 1...4 (1 = EC class)"
            for (file, records) in fasta {
                for r in records { rejected.append(RejectedRecord(file: file, line: r.line, id: r.id, reason: reason)) }
            }
            for (file, records) in labels {
                for r in records { rejected.append(RejectedRecord(file: file, line: r.line, id: r.id, reason: reason)) }
            }
            return ([], [], rejected)
        }

        struct Seq { var file: String; var record: FastaRecord }
        struct Lab { var file: String; var record: LabelRecord }

        var seqOrder: [String] = [], seqGroups: [String: [Seq]] = [:]
        for (file, records) in fasta {
            for r in records {
                if seqGroups[r.id] == nil { seqOrder.append(r.id) }
                seqGroups[r.id, default: []].append(Seq(file: file, record: r))
            }
        }
        var labOrder: [String] = [], labGroups: [String: [Lab]] = [:]
        for (file, records) in labels {
            for r in records {
                if labGroups[r.id] == nil { labOrder.append(r.id) }
                labGroups[r.id, default: []].append(Lab(file: file, record: r))
            }
        }

        // Resolve duplicate IDs among FASTA records.
        var seqByID: [String: Seq] = [:]
        var deadSequence: [String: String] = [:]   // id -> why its sequences were rejected
        for id in seqOrder {
            let group = seqGroups[id]!
            var keep = group[0]
            if group.count > 1 {
                if group.allSatisfy({ $0.record.sequence == keep.record.sequence }) {
                    for other in group.dropFirst() {
                        keep.record.notes.append("duplicate ID also at \(other.file):\(other.record.line) with the identical sequence; kept once")
                    }
                } else {
                    for s in group {
                        let other = group.first { $0.record.sequence != s.record.sequence }!
                        rejected.append(RejectedRecord(file: s.file, line: s.record.line, id: id,
                            reason: "duplicate ID with a different sequence (also at \(other.file):\(other.record.line))"))
                    }
                    deadSequence[id] = "its sequences were rejected: duplicate ID with different sequences"
                    continue
                }
            }
            seqByID[id] = keep
        }

        // Resolve duplicate IDs among label rows.
        var labByID: [String: Lab] = [:]
        var deadLabel: [String: String] = [:]
        for id in labOrder {
            let group = labGroups[id]!
            func tableSeq(_ l: Lab) -> String? {
                guard let s = l.record.sequence, !s.isEmpty else { return nil }
                return s
            }
            let ecSet = Set(group[0].record.ecNumbers)
            let seqs = Set(group.compactMap(tableSeq))
            if group.count > 1 {
                if group.allSatisfy({ Set($0.record.ecNumbers) == ecSet }) && seqs.count <= 1 {
                    var keep = group.first { tableSeq($0) != nil } ?? group[0]
                    for other in group where !(other.file == keep.file && other.record.line == keep.record.line) {
                        keep.record.notes.append("duplicate label row also at \(other.file):\(other.record.line) with the same ECs; kept once")
                    }
                    labByID[id] = keep
                } else {
                    for l in group {
                        let other = group.first { !($0.file == l.file && $0.record.line == l.record.line) }!
                        let what = seqs.count > 1 ? "different sequences" : "different EC labels"
                        rejected.append(RejectedRecord(file: l.file, line: l.record.line, id: id,
                            reason: "duplicate ID with \(what) (also at \(other.file):\(other.record.line): '\(other.record.rawLabel)')"))
                    }
                    deadLabel[id] = "its label rows were rejected: duplicate ID with conflicting labels"
                }
            } else {
                labByID[id] = group[0]
            }
        }

        var firstFastaRejection: [String: RejectedRecord] = [:]
        for r in fastaRejected { if let id = r.id, firstFastaRejection[id] == nil { firstFastaRejection[id] = r } }

        var accepted: [LabeledSequence] = []
        func build(id: String, sequence: String, lab: Lab, file: String, line: Int, notes: [String]) {
            guard !sequence.isEmpty else {
                rejected.append(RejectedRecord(file: file, line: line, id: id, reason: "empty sequence"))
                return
            }
            let result = label(for: lab.record.ecNumbers, level: level)
            guard let label = result.label else {
                let reason = result.reason ?? "no EC label"
                rejected.append(RejectedRecord(file: file, line: line, id: id, reason: reason))
                if spansSeveralClasses(lab.record.ecNumbers, level: level) {
                    excluded.append(ExcludedSequence(id: id, sequence: sequence, ecNumbers: lab.record.ecNumbers,
                                                     sourceFile: file, line: line, notes: notes + lab.record.notes,
                                                     reason: reason))
                }
                return
            }
            accepted.append(LabeledSequence(id: id, sequence: sequence, ecNumbers: lab.record.ecNumbers,
                                            label: label, sourceFile: file, line: line,
                                            notes: notes + lab.record.notes + result.notes))
        }

        for id in seqOrder {
            guard let s = seqByID[id] else { continue }
            guard let lab = labByID[id] else {
                rejected.append(RejectedRecord(file: s.file, line: s.record.line, id: id,
                                               reason: deadLabel[id] ?? "no EC label"))
                continue
            }
            if let t = lab.record.sequence, !t.isEmpty, t != s.record.sequence {
                rejected.append(RejectedRecord(file: s.file, line: s.record.line, id: id,
                    reason: "sequence differs from the one in the label table at \(lab.file):\(lab.record.line)"))
                rejected.append(RejectedRecord(file: lab.file, line: lab.record.line, id: id,
                    reason: "table sequence differs from the FASTA record at \(s.file):\(s.record.line)"))
                continue
            }
            build(id: id, sequence: s.record.sequence, lab: lab, file: s.file, line: s.record.line, notes: s.record.notes)
        }
        for id in labOrder where seqGroups[id] == nil {
            guard let lab = labByID[id] else { continue }
            if let why = deadSequence[id] {
                rejected.append(RejectedRecord(file: lab.file, line: lab.record.line, id: id, reason: why))
                continue
            }
            guard let t = lab.record.sequence else {
                var reason = "label without sequence"
                if let cause = firstFastaRejection[id] {
                    reason = "label for a sequence rejected in \(cause.file)" + (cause.line.map { " line \($0)" } ?? "") + ": \(cause.reason)"
                }
                rejected.append(RejectedRecord(file: lab.file, line: lab.record.line, id: id, reason: reason))
                continue
            }
            build(id: id, sequence: t, lab: lab, file: lab.file, line: lab.record.line, notes: [])
        }
        // Label rows whose ID's FASTA copies were all rejected as conflicting duplicates.
        for id in labOrder where seqGroups[id] != nil && seqByID[id] == nil {
            guard let lab = labByID[id], let why = deadSequence[id] else { continue }
            rejected.append(RejectedRecord(file: lab.file, line: lab.record.line, id: id, reason: why))
        }
        return (accepted, excluded, rejected)
    }

    /// True when two of `ecs` disagree at a level `<= level` that both know (`1.1.1.1` and
    /// `2.7.1.1` at level 1; `3.4.-.-` and `3.5.1.1` at level 2, not at level 1).
    public static func spansSeveralClasses(_ ecs: [ECNumber], level: Int) -> Bool {
        let depth = min(max(level, 0), 4)
        for i in 0..<ecs.count {
            for j in (i + 1)..<max(i + 1, ecs.count) {
                for k in 0..<depth {
                    if let a = ecs[i].levels[k], let b = ecs[j].levels[k], a != b { return true }
                }
            }
        }
        return false
    }

    /// The label of a set of ECs at `level` (1...4): the common truncation of the ECs known at
    /// `level`, or a rejection reason when they disagree at a known level `<= level` ("ECs span
    /// several classes at level 1: ..." at level 1, "ECs give different labels at level N: ..." at 2-4) or none is known down to `level` ("ECs unknown at level N").
    /// `notes` mentions less specific ECs that were ignored.
    public static func label(for ecs: [ECNumber], level: Int) -> (label: ECNumber?, reason: String?, notes: [String]) {
        guard !ecs.isEmpty else { return (nil, "no EC label", []) }
        guard (1...4).contains(level) else { return (nil, "invalid EC level \(level): pass 1...4", []) }
        let list = ecs.map(\.description).joined(separator: "; ")
        if spansSeveralClasses(ecs, level: level) {
            // At levels 2-4 both ECs may be in one class: they give different labels, not classes.
            let what = level == 1 ? "span several classes" : "give different labels"
            return (nil, "ECs \(what) at level \(level): \(list)", [])
        }
        let known = ecs.filter { $0.knownDepth >= level }
        guard let first = known.first else {
            return (nil, "ECs unknown at level \(level): \(list)", [])
        }
        let vague = ecs.filter { $0.knownDepth < level }
        let notes = vague.isEmpty ? [] :
            ["less specific ECs ignored at level \(level): " + vague.map(\.description).joined(separator: "; ")]
        return (first.truncated(toLevel: level), nil, notes)
    }
}
