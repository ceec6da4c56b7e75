import Foundation
import GRDB
import GRDBSQLite

/// Little-endian packing of numeric arrays into BLOBs.
enum Blob {
    static func pack<T: FixedWidthInteger>(_ values: [T]) -> Data {
        var data = Data(capacity: values.count * MemoryLayout<T>.size)
        for v in values { withUnsafeBytes(of: v.littleEndian) { data.append(contentsOf: $0) } }
        return data
    }
    static func pack(_ values: [Double]) -> Data { pack(values.map { $0.bitPattern }) }
    static func unpack<T: FixedWidthInteger>(_ data: Data, as: T.Type) throws -> [T] {
        let size = MemoryLayout<T>.size
        guard data.count % size == 0 else { throw StoreError.corrupt("BLOB of \(data.count) bytes is not a multiple of \(size)") }
        return data.withUnsafeBytes { raw in
            (0 ..< data.count / size).map { T(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * size, as: T.self)) }
        }
    }
    static func unpackDoubles(_ data: Data) throws -> [Double] { try unpack(data, as: UInt64.self).map(Double.init(bitPattern:)) }
}

extension RunDatabase {
    // MARK: Run and ledger

    /// Records the spec of this invocation (the latest one wins; stage content keys,
    /// not this row, decide whether recorded work is still valid).
    public func registerRun(_ run: RunRecord) throws {
        try write("registering the run") { db in
            try db.execute(sql: """
                INSERT INTO run (id, name, spec_path, spec_yaml, spec_sha256, kneuron_version) VALUES (1, ?, ?, ?, ?, ?)
                ON CONFLICT(id) DO UPDATE SET name = excluded.name, spec_path = excluded.spec_path,
                  spec_yaml = excluded.spec_yaml, spec_sha256 = excluded.spec_sha256, kneuron_version = excluded.kneuron_version
                """, arguments: [run.name, run.specPath, run.specYAML, run.specSHA256, run.kneuronVersion])
        }
    }

    /// The recorded run, if any.
    public func run() throws -> RunRecord? {
        try read("reading the run") { db in
            try Row.fetchOne(db, sql: "SELECT name, spec_path, spec_yaml, spec_sha256, kneuron_version FROM run WHERE id = 1").map {
                RunRecord(name: $0[0], specPath: $0[1], specYAML: $0[2], specSHA256: $0[3], kneuronVersion: $0[4])
            }
        }
    }

    /// Stores the `name<TAB>value` lines a recorded stage's content key was made from, so
    /// that a later refusal can say which parameter or input file changed.
    public func setStageParameters(_ stage: String, parameters: String) throws {
        try write("recording the parameters of stage \(stage)") { db in
            try db.execute(sql: "UPDATE stages SET parameters = ? WHERE stage = ?", arguments: [parameters, stage])
        }
    }

    /// The ledger row of `stage`, or nil when the stage has not finished.
    public func stage(_ stage: String) throws -> StageRecord? {
        try stages().first { $0.stage == stage }
    }

    /// Every finished stage.
    public func stages() throws -> [StageRecord] {
        try read("reading the stage ledger") { db in
            try Row.fetchAll(db, sql: "SELECT stage, content_key, rows_written, seconds, finished_at, parameters FROM stages").map {
                var r = StageRecord(stage: $0[0], contentKey: $0[1], rowsWritten: $0[2], seconds: $0[3], finishedAt: $0[4])
                r.parameters = $0[5]
                return r
            }
        }
    }

    static func insertLedger(_ db: Database, _ s: StageRecord) throws {
        try db.execute(sql: "INSERT INTO stages (stage, content_key, rows_written, seconds) VALUES (?, ?, ?, ?)",
                       arguments: [s.stage, s.contentKey, s.rowsWritten, s.seconds])
    }

    /// Deletes the rows of the given stages and their ledger rows, later stages first, in
    /// one transaction (used by `--force`). Returns the rows deleted per table.
    /// - Parameter keepingSanityUnits: keep the sanity stage's finished units (`sanity_units`,
    ///   `sanity_checks`; they are keyed by what they depend on, and discarded by the stage when
    ///   stale), so forcing an earlier stage that they do not depend on (evidence) does not redo them.
    public func discard(stages names: [String], keepingSanityUnits: Bool = false) throws -> [(table: String, rows: Int)] {
        // Each delete returns the rows it removed; score sets span two tables (migration 0003).
        func sql(_ statement: String) -> (Database) throws -> Int { { db in try db.execute(sql: statement); return db.changesCount } }
        func scoreSets(_ condition: String) -> (Database) throws -> Int { { db in try Self.deleteScoreSets(db, where: condition) } }
        let deletes: [(stage: String, table: String, delete: (Database) throws -> Int)] = [
            ("cards", "neuron_subclasses", sql("DELETE FROM neuron_subclasses")),
            ("cards", "neuron_classes", sql("DELETE FROM neuron_classes")),
            ("cards", "neuron_positions", sql("DELETE FROM neuron_positions")),
            ("cards", "neuron_enrichment", sql("DELETE FROM neuron_enrichment")),
            ("cards", "neuron_examples", sql("DELETE FROM neuron_examples")),
            ("cards", "neuron_profiles", sql("DELETE FROM neuron_profiles")),
            ("cards", "card_neurons", sql("DELETE FROM card_neurons")),
            ("cards", "card_shards", sql("DELETE FROM card_shards")),
            ("cards", "card_motif_tests", sql("DELETE FROM card_motif_tests")),
            ("cards", "card_control_classes", sql("DELETE FROM card_control_classes")),
            ("cards", "card_controls", sql("DELETE FROM card_controls")),
            ("neurons", "planted_recovery", sql("DELETE FROM planted_recovery")),
            ("neurons", "selectivity_shards", sql("DELETE FROM selectivity_shards")),
            ("neurons", "motif_selectivity", sql("DELETE FROM motif_selectivity")),
            ("sanity", "sanity_verdicts", sql("DELETE FROM sanity_verdicts")),
            ("sanity", "sanity_checks", sql("DELETE FROM sanity_checks")),
            ("sanity", "sanity_units", sql("DELETE FROM sanity_units")),
            ("evidence", "knowledge_edits", sql("DELETE FROM knowledge_edits")),
            ("evidence", "significance", sql("DELETE FROM significance")),
            ("evidence", "curve_auc", sql("DELETE FROM curve_auc")),
            ("evidence", "curves", sql("DELETE FROM curves")),
            ("evidence", "evidence_units", sql("DELETE FROM evidence_units")),
            ("evaluate", "predictions", sql("DELETE FROM predictions")),
            ("evaluate", "evaluation_classes", sql("DELETE FROM evaluation_classes")),
            ("evaluate", "evaluations", sql("DELETE FROM evaluations")),
            ("select", "selection_density", sql("DELETE FROM selection_density")),
            ("select", "selections", sql("DELETE FROM selections")),
            ("select", "neuron_scores (random)", scoreSets("method = 'random'")),
            ("attribute", "neuron_scores", scoreSets("method != 'random'")),
            ("attribute", "ig_completeness", sql("DELETE FROM ig_completeness")),
            ("attribute", "shard_sums", sql("DELETE FROM shard_sums")),
            ("attribute", "shard_totals", sql("DELETE FROM shard_totals")),
            ("attribute", "shards", sql("DELETE FROM shards")),
            ("train", "training_epochs", sql("DELETE FROM training_epochs")),
            ("train", "checkpoints", sql("DELETE FROM checkpoints")),
            ("train", "model_head", sql("DELETE FROM model_head")),
            ("train", "model_head_classes", sql("DELETE FROM model_head_classes")),
            ("split", "splits", sql("DELETE FROM splits")),
            ("tokenize", "tokens", sql("DELETE FROM tokens")),
            ("tokenize", "rejected_records (tokenize)", sql("DELETE FROM rejected_records WHERE reason LIKE 'tokenize:%'")),
            ("ingest", "planted_motifs", sql("DELETE FROM planted_motifs")),
            ("ingest", "labels", sql("DELETE FROM labels")),
            ("ingest", "rejected_records", sql("DELETE FROM rejected_records")),
            ("ingest", "sequences", sql("DELETE FROM sequences")),
            ("ingest", "classes", sql("DELETE FROM classes")),
            ("ingest", "input_files", sql("DELETE FROM input_files")),
        ]
        return try write("discarding stages \(names.joined(separator: ", "))") { db in
            var out: [(String, Int)] = []
            for d in deletes where names.contains(d.stage) {
                if keepingSanityUnits, ["sanity_units", "sanity_checks"].contains(d.table) { continue }
                out.append((d.table, try d.delete(db)))
            }
            for name in names { try db.execute(sql: "DELETE FROM stages WHERE stage = ?", arguments: [name]) }
            return out
        }
    }

    // MARK: ingest

    /// Writes ingest's output and ledger row in one transaction: `sequences` (for training) and
    /// `excluded` (kept with `excluded_reason`, `ec_label` NULL) go to `sequences`, the EC numbers
    /// of both to `labels`.
    public func commitIngest(files: [InputFileRecord], classes: [ClassRecord], sequences: [SequenceRecord],
                             excluded: [ExcludedSequenceRecord] = [], rejected: [RejectedRow], plantedMotifs: [PlantedMotifRecord] = [],
                             ledger: StageRecord) throws {
        try write("writing ingest results") { db in
            for f in files {
                try db.execute(sql: "INSERT INTO input_files (path, role, size_bytes, sha256) VALUES (?, ?, ?, ?)",
                               arguments: [f.path, f.role, f.sizeBytes, f.sha256])
            }
            for c in classes {
                try db.execute(sql: "INSERT INTO classes (class_index, ec_label, name) VALUES (?, ?, ?)",
                               arguments: [c.classIndex, c.ecLabel, c.name])
            }
            let seq = try db.makeStatement(sql: "INSERT INTO sequences (id, sequence, length, ec_label, source_file, source_line, notes) VALUES (?, ?, ?, ?, ?, ?, ?)")
            let lab = try db.makeStatement(sql: "INSERT OR IGNORE INTO labels (sequence_id, ec_number) VALUES (?, ?)")
            for s in sequences {
                try seq.execute(arguments: [s.id, s.sequence, s.sequence.count, s.ecLabel, s.sourceFile, s.sourceLine, s.notes])
                for ec in s.ecNumbers { try lab.execute(arguments: [s.id, ec]) }
            }
            let ex = try db.makeStatement(sql: "INSERT INTO sequences (id, sequence, length, ec_label, source_file, source_line, notes, excluded_reason) VALUES (?, ?, ?, NULL, ?, ?, ?, ?)")
            for s in excluded {
                try ex.execute(arguments: [s.id, s.sequence, s.sequence.count, s.sourceFile, s.sourceLine, s.notes, s.reason])
                for ec in s.ecNumbers { try lab.execute(arguments: [s.id, ec]) }
            }
            let rej = try db.makeStatement(sql: "INSERT OR IGNORE INTO rejected_records (file, line, record_id, reason) VALUES (?, ?, ?, ?)")
            for r in rejected { try rej.execute(arguments: [r.file, r.line, r.recordID, r.reason]) }
            let motif = try db.makeStatement(sql: "INSERT INTO planted_motifs (sequence_id, start, \"end\", residues, pattern, ec_label, decoy) VALUES (?, ?, ?, ?, ?, ?, ?)")
            for m in plantedMotifs {
                try motif.execute(arguments: [m.sequenceID, m.start, m.end, m.residues, m.pattern, m.ecLabel, m.ecLabel == nil ? 1 : 0])
            }
            try Self.insertLedger(db, ledger)
        }
    }

    /// The planted motifs (empty unless the run ingested `inputs.planted_motifs`), by sequence and start.
    public func plantedMotifs() throws -> [PlantedMotifRecord] {
        try read("reading planted motifs") { db in
            try Row.fetchAll(db, sql: "SELECT sequence_id, start, \"end\", residues, pattern, ec_label FROM planted_motifs ORDER BY sequence_id, start").map {
                PlantedMotifRecord(sequenceID: $0[0], start: $0[1], end: $0[2], residues: $0[3], pattern: $0[4], ecLabel: $0[5])
            }
        }
    }

    /// Input files recorded by ingest.
    public func inputFiles() throws -> [InputFileRecord] {
        try read("reading input files") { db in
            try Row.fetchAll(db, sql: "SELECT path, role, size_bytes, sha256 FROM input_files ORDER BY path").map {
                InputFileRecord(path: $0[0], role: $0[1], sizeBytes: $0[2], sha256: $0[3])
            }
        }
    }

    /// Classes ordered by index.
    public func classes() throws -> [ClassRecord] {
        try read("reading classes") { db in
            try Row.fetchAll(db, sql: "SELECT class_index, ec_label, name FROM classes ORDER BY class_index").map {
                ClassRecord(classIndex: $0[0], ecLabel: $0[1], name: $0[2])
            }
        }
    }

    /// Sequences for training (`excluded_reason IS NULL`) ordered by id, with their EC numbers.
    /// Excluded sequences are read by `excludedSequences()`.
    public func sequences() throws -> [SequenceRecord] {
        try read("reading sequences") { db in
            var ecs: [String: [String]] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT sequence_id, ec_number FROM labels ORDER BY sequence_id, ec_number") {
                ecs[row[0], default: []].append(row[1])
            }
            return try Row.fetchAll(db, sql: "SELECT id, sequence, ec_label, source_file, source_line, notes FROM sequences WHERE excluded_reason IS NULL ORDER BY id").map {
                let id: String = $0[0]
                return SequenceRecord(id: id, sequence: $0[1], ecLabel: $0[2], ecNumbers: ecs[id] ?? [],
                                      sourceFile: $0[3], sourceLine: $0[4], notes: $0[5])
            }
        }
    }

    /// Sequences kept but excluded from training, ordered by id, with their EC numbers and reason.
    public func excludedSequences() throws -> [ExcludedSequenceRecord] {
        try read("reading excluded sequences") { db in
            var ecs: [String: [String]] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT l.sequence_id, l.ec_number FROM labels l JOIN sequences s ON s.id = l.sequence_id WHERE s.excluded_reason IS NOT NULL ORDER BY l.sequence_id, l.ec_number") {
                ecs[row[0], default: []].append(row[1])
            }
            return try Row.fetchAll(db, sql: "SELECT id, sequence, source_file, source_line, notes, excluded_reason FROM sequences WHERE excluded_reason IS NOT NULL ORDER BY id").map {
                let id: String = $0[0]
                return ExcludedSequenceRecord(id: id, sequence: $0[1], ecNumbers: ecs[id] ?? [], sourceFile: $0[2],
                                              sourceLine: $0[3], notes: $0[4], reason: $0[5])
            }
        }
    }

    /// Rejected records, ordered by file and line.
    public func rejectedRecords() throws -> [RejectedRow] {
        try read("reading rejected records") { db in
            try Row.fetchAll(db, sql: "SELECT file, line, record_id, reason FROM rejected_records ORDER BY file, line, record_id").map {
                RejectedRow(file: $0[0], line: $0[1], recordID: $0[2], reason: $0[3])
            }
        }
    }

    // MARK: tokenize

    /// Writes the token rows and the ledger row in one transaction.
    /// `refused`: sequences the crop policy refused; they go to `rejected_records` with a
    /// reason starting `tokenize:` (and are removed again when the stage is discarded).
    public func commitTokens(_ tokens: [TokenRecord], refused: [RejectedRow] = [], ledger: StageRecord) throws {
        try write("writing tokens") { db in
            let rj = try db.makeStatement(sql: "INSERT OR IGNORE INTO rejected_records (file, line, record_id, reason) VALUES (?, ?, ?, ?)")
            for r in refused { try rj.execute(arguments: [r.file, r.line, r.recordID, r.reason]) }
            let st = try db.makeStatement(sql: "INSERT INTO tokens (sequence_id, token_ids, n_tokens, residue_start, residue_end, original_length, cropped) VALUES (?, ?, ?, ?, ?, ?, ?)")
            for t in tokens {
                try st.execute(arguments: [t.sequenceID, Blob.pack(t.ids), t.ids.count, t.residueStart, t.residueEnd, t.originalLength, t.cropped ? 1 : 0])
            }
            try Self.insertLedger(db, ledger)
        }
    }

    /// Token rows by sequence id.
    /// - Throws: `StoreError.corrupt` for a malformed BLOB.
    public func tokens() throws -> [String: TokenRecord] {
        try read("reading tokens") { db in
            var out: [String: TokenRecord] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT sequence_id, token_ids, residue_start, residue_end, original_length FROM tokens") {
                let id: String = row[0]
                let data: Data = row[1]
                out[id] = TokenRecord(sequenceID: id, ids: try Blob.unpack(data, as: Int32.self), residueStart: row[2], residueEnd: row[3], originalLength: row[4])
            }
            return out
        }
    }

    // MARK: split

    /// Writes the split assignment and the ledger row in one transaction.
    public func commitSplits(_ splits: [String: String], ledger: StageRecord) throws {
        try write("writing splits") { db in
            let st = try db.makeStatement(sql: "INSERT INTO splits (sequence_id, split) VALUES (?, ?)")
            for (id, split) in splits.sorted(by: { $0.key < $1.key }) { try st.execute(arguments: [id, split]) }
            try Self.insertLedger(db, ledger)
        }
    }

    /// Sequence ids of one split, ordered by id.
    public func sequenceIDs(split: String) throws -> [String] {
        try read("reading split \(split)") { db in
            try String.fetchAll(db, sql: "SELECT sequence_id FROM splits WHERE split = ? ORDER BY sequence_id", arguments: [split])
        }
    }

    // MARK: train

    /// Records one finished epoch (no ledger row: the stage finishes with `commitTraining`).
    /// Re-recording an epoch replaces it (a crashed and restarted training run).
    public func recordEpoch(_ e: EpochRecord) throws {
        try write("recording epoch \(e.epoch)") { db in
            try db.execute(sql: "INSERT OR REPLACE INTO training_epochs (epoch, train_loss, train_accuracy, select_loss, select_accuracy, seconds) VALUES (?, ?, ?, ?, ?, ?)",
                           arguments: [e.epoch, e.trainLoss, e.trainAccuracy, e.selectLoss, e.selectAccuracy, e.seconds])
        }
    }

    /// Deletes epochs after `epoch` (a restart from an earlier state).
    public func deleteEpochs(after epoch: Int) throws {
        try write("deleting epochs") { db in
            try db.execute(sql: "DELETE FROM training_epochs WHERE epoch > ?", arguments: [epoch])
        }
    }

    /// The training curve, ordered by epoch.
    public func epochs() throws -> [EpochRecord] {
        try read("reading epochs") { db in
            try Row.fetchAll(db, sql: "SELECT epoch, train_loss, train_accuracy, select_loss, select_accuracy, seconds FROM training_epochs ORDER BY epoch").map {
                EpochRecord(epoch: $0[0], trainLoss: $0[1], trainAccuracy: $0[2], selectLoss: $0[3], selectAccuracy: $0[4], seconds: $0[5])
            }
        }
    }

    /// Writes the checkpoints and the train ledger row in one transaction.
    public func commitTraining(checkpoints: [CheckpointRecord], head: ModelHeadRecord? = nil, ledger: StageRecord) throws {
        try write("writing checkpoints") { db in
            for c in checkpoints {
                try db.execute(sql: "INSERT OR REPLACE INTO checkpoints (name, directory, sha256, size_bytes) VALUES (?, ?, ?, ?)",
                               arguments: [c.name, c.directory, c.sha256, c.sizeBytes])
            }
            if let head {
                try db.execute(sql: "DELETE FROM model_head")
                try db.execute(sql: "DELETE FROM model_head_classes")
                try db.execute(sql: "INSERT INTO model_head (id, source, decision, detail, ignored) VALUES (1, ?, ?, ?, ?)",
                               arguments: [head.source, head.decision, head.detail, head.ignored])
                for m in head.classes {
                    try db.execute(sql: "INSERT INTO model_head_classes (class_index, checkpoint_index, checkpoint_label) VALUES (?, ?, ?)",
                                   arguments: [m.classIndex, m.checkpointIndex, m.checkpointLabel])
                }
            }
            try Self.insertLedger(db, ledger)
        }
    }

    /// The recorded head of the run's initial model (migration 0017), nil before train.
    /// - Throws: `StoreError` when the database cannot be read.
    public func modelHead() throws -> ModelHeadRecord? {
        try read("reading model_head") { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT source, decision, detail, ignored FROM model_head WHERE id = 1") else { return nil }
            let classes = try Row.fetchAll(db, sql: "SELECT class_index, checkpoint_index, checkpoint_label FROM model_head_classes ORDER BY class_index").map {
                ModelHeadRecord.ClassMapping(classIndex: $0[0], checkpointIndex: $0[1], checkpointLabel: $0[2])
            }
            return ModelHeadRecord(source: row[0], decision: row[1], detail: row[2], ignored: row[3], classes: classes)
        }
    }

    /// A checkpoint by name.
    public func checkpoint(named name: String) throws -> CheckpointRecord? {
        try read("reading checkpoint \(name)") { db in
            try Row.fetchOne(db, sql: "SELECT name, directory, sha256, size_bytes FROM checkpoints WHERE name = ?", arguments: [name]).map {
                CheckpointRecord(name: $0[0], directory: $0[1], sha256: $0[2], sizeBytes: $0[3])
            }
        }
    }

    // MARK: attribute

    /// The rows another process recorded for `ledger`'s stage under the same content key (it
    /// finished first: nothing more to write), or nil when the stage is not recorded.
    /// - Throws: `StoreError.superseded` when it is recorded under another key.
    static func alreadyRecorded(_ db: Database, _ ledger: StageRecord) throws -> Int? {
        guard let row = try Row.fetchOne(db, sql: "SELECT content_key, rows_written FROM stages WHERE stage = ?", arguments: [ledger.stage]) else { return nil }
        if (row[0] as String) == ledger.contentKey { return row[1] as Int }
        throw StoreError.superseded("stage \(ledger.stage) was recorded by another process with other parameters while this one worked; this process's work is dropped")
    }

    /// Throws `StoreError.superseded` unless the ledger records `stage` with `contentKey`
    /// (checked inside the caller's write transaction).
    static func requireLedger(_ db: Database, _ requirement: LedgerRequirement?, doing work: String) throws {
        guard let requirement else { return }
        let recorded = try String.fetchOne(db, sql: "SELECT content_key FROM stages WHERE stage = ?", arguments: [requirement.stage])
        if recorded != requirement.contentKey {
            throw StoreError.superseded("stage \(requirement.stage) was " + (recorded == nil ? "discarded" : "redone")
                + " by another process while this one was \(work); this process's work is dropped")
        }
    }

    /// Deletes the shards (and their completeness rows) of another content key. Internal.
    static func deleteShards(_ db: Database, otherThan contentKey: String) throws -> Int {
        // Shards of two keys never coexist (this delete runs before every commit), so every
        // completeness row of a granularity and shard index that has another key's shard is stale.
        try db.execute(sql: """
            DELETE FROM ig_completeness WHERE (granularity, shard_index) IN
              (SELECT granularity, shard_index FROM shards WHERE content_key != ?)
            """, arguments: [contentKey])
        try db.execute(sql: """
            DELETE FROM shard_sums WHERE shard_index >= 0 AND (method, granularity, shard_index) IN
              (SELECT method, granularity, shard_index FROM shards WHERE content_key != ?)
            """, arguments: [contentKey])
        try db.execute(sql: """
            DELETE FROM shard_sums WHERE shard_index = -1 AND (method, granularity) IN
              (SELECT method, granularity FROM shard_totals WHERE content_key != ?)
            """, arguments: [contentKey])
        try db.execute(sql: "DELETE FROM shard_totals WHERE content_key != ?", arguments: [contentKey])
        try db.execute(sql: "DELETE FROM shards WHERE content_key != ?", arguments: [contentKey])
        return db.changesCount
    }

    /// Indices of the finished shards of `method` at `granularity` (of `contentKey` only, when given).
    /// - Throws: `StoreError.sqlite`.
    public func finishedShards(method: String, granularity: String = "weight", contentKey: String? = nil) throws -> Set<Int> {
        try read("reading shards") { db in
            Set(try Int.fetchAll(db, sql: "SELECT shard_index FROM shards WHERE method = ? AND granularity = ? AND (? IS NULL OR content_key = ?)",
                                 arguments: [method, granularity, contentKey, contentKey]))
        }
    }

    /// Deletes the finished shards (and their completeness rows) recorded under another
    /// content key than `contentKey`, i.e. with other attribution parameters or another model,
    /// in one transaction. Returns how many shards were discarded.
    public func discardShards(otherThan contentKey: String) throws -> Int {
        try write("discarding stale shards") { db in try Self.deleteShards(db, otherThan: contentKey) }
    }

    /// Every finished shard of `method` at `granularity`, ordered by shard index (of
    /// `contentKey` only, when given). Their sums are not read back (`sums` is empty): they are
    /// added into the running total as shards commit (`shardTotal`).
    /// - Throws: `StoreError.sqlite`, `.corrupt` for a class_counts BLOB of the wrong length.
    public func shards(method: String, granularity: String = "weight", contentKey: String? = nil) throws -> [ShardRecord] {
        try read("reading shards") { db in
            try Row.fetchAll(db, sql: "SELECT method, granularity, shard_index, n_sequences, class_counts, seconds, content_key FROM shards WHERE method = ? AND granularity = ? AND (? IS NULL OR content_key = ?) ORDER BY shard_index",
                             arguments: [method, granularity, contentKey, contentKey]).map {
                let counts: Data? = $0[4]
                return ShardRecord(method: $0[0], granularity: $0[1], shardIndex: $0[2], nSequences: $0[3],
                                   classCounts: try counts.map { try Blob.unpack($0, as: Int64.self).map(Int.init) },
                                   sums: [], seconds: $0[5], contentKey: $0[6])
            }
        }
    }

    /// Completeness rows ordered by sequence id.
    public func completeness() throws -> [CompletenessRecord] {
        try read("reading completeness") { db in
            try Row.fetchAll(db, sql: "SELECT sequence_id, granularity, layer, module, shard_index, target_class, p_full, p_baseline, attribution_sum FROM ig_completeness ORDER BY sequence_id, granularity, layer, module").map {
                CompletenessRecord(sequenceID: $0[0], granularity: $0[1], layer: $0[2], module: $0[3], shardIndex: $0[4], targetClass: $0[5],
                                   pFull: $0[6], pBaseline: $0[7], attributionSum: $0[8])
            }
        }
    }

    /// Mean and max |gap| of the integrated-gradients completeness rows per granularity.
    /// - Throws: `StoreError.sqlite`.
    public func completenessSummary() throws -> [(granularity: String, paths: Int, meanAbsGap: Double, maxAbsGap: Double)] {
        try read("summarising completeness") { db in
            try Row.fetchAll(db, sql: "SELECT granularity, COUNT(*), AVG(ABS(gap)), MAX(ABS(gap)) FROM ig_completeness GROUP BY granularity ORDER BY granularity").map {
                ($0[0], $0[1], $0[2], $0[3])
            }
        }
    }

    /// Writes the final score sets of the attribute stage (each in its layout's order) with
    /// their ranked rows, and the attribute ledger row, and deletes the shards' partial sums,
    /// in one transaction.
    /// Returns the number of rows written.
    /// When the ledger already records the stage with the same content key (another process
    /// of an array job combined first), nothing is written and the recorded row count is returned.
    @discardableResult
    public func commitScores(_ scores: [ScoreSet], ledger: StageRecord,
                             requiring: LedgerRequirement? = nil) throws -> Int {
        try write("writing neuron scores") { db in
            try Self.requireLedger(db, requiring, doing: "combining the shards")
            if let rows = try Self.alreadyRecorded(db, ledger) { return rows }
            var n = 0
            for s in scores { n += try Self.insertScores(db, s, storage: storage) }
            // The shards' partial sums are folded into these scores: their space is free again
            // (the shards' done marks stay for `status`).
            try db.execute(sql: "DELETE FROM shard_sums")
            try db.execute(sql: "DELETE FROM shard_totals")
            var l = ledger
            l.rowsWritten = n
            try Self.insertLedger(db, l)
            return n
        }
    }

    /// Every stored score set's ranking id, ordered.
    /// - Throws: `StoreError.sqlite`.
    public func scoreSets() throws -> [RankingID] {
        try read("reading score sets") { db in
            try Row.fetchAll(db, sql: "SELECT method, granularity, target_class, seed FROM score_sets").map {
                RankingID(method: $0[0], granularity: $0[1], targetClass: $0[2], seed: $0[3])
            }.sorted()
        }
    }

    // MARK: select

    /// Writes the random-baseline scores (with their ranks, `ScoreRanking.ranks(values)`, which
    /// the select stage has already computed), the selections and their densities, and the
    /// select ledger row, in one transaction.
    public func commitSelections(randomScores: [ScoreSet], selections: [SelectionRecord], densities: [DensityRecord], ledger: StageRecord) throws {
        try write("writing selections") { db in
            for r in randomScores { _ = try Self.insertScores(db, r, storage: storage) }
            for s in selections {
                try db.execute(sql: "INSERT INTO selections (method, granularity, target_class, retention_fraction, seed, n_kept, n_total, min_kept_score) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                               arguments: [s.method, s.granularity, s.targetClass, s.retentionFraction, s.seed, s.nKept, s.nTotal, s.minKeptScore])
            }
            let st = try db.makeStatement(sql: "INSERT INTO selection_density (method, granularity, target_class, retention_fraction, seed, layer, module, n_kept, n_total) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
            for d in densities {
                try st.execute(arguments: [d.method, d.granularity, d.targetClass, d.retentionFraction, d.seed, d.layer, d.module, d.nKept, d.nTotal])
            }
            try Self.insertLedger(db, ledger)
        }
    }

    /// Stored selections, ordered by method, fraction (descending) and seed.
    public func selections() throws -> [SelectionRecord] {
        try read("reading selections") { db in
            try Row.fetchAll(db, sql: "SELECT method, granularity, target_class, retention_fraction, seed, n_kept, n_total, min_kept_score FROM selections ORDER BY granularity, method, target_class, retention_fraction DESC, seed").map {
                SelectionRecord(method: $0[0], granularity: $0[1], targetClass: $0[2], retentionFraction: $0[3], seed: $0[4],
                                nKept: $0[5], nTotal: $0[6], minKeptScore: $0[7])
            }
        }
    }

    /// Density rows ordered by selection, layer and module.
    public func densities() throws -> [DensityRecord] {
        try read("reading densities") { db in
            // Blocks in the order their selection's score set stores them (score_blocks).
            try Row.fetchAll(db, sql: """
                SELECT d.method, d.granularity, d.target_class, d.retention_fraction, d.seed, d.layer, d.module, d.n_kept, d.n_total
                FROM selection_density d
                LEFT JOIN score_sets s ON s.method = d.method AND s.granularity = d.granularity AND s.target_class = d.target_class AND s.seed = d.seed
                LEFT JOIN score_blocks b ON b.set_id = s.set_id AND b.layer = d.layer AND b.module = d.module
                ORDER BY d.granularity, d.method, d.target_class, d.retention_fraction DESC, d.seed, b.block_index
                """).map {
                DensityRecord(method: $0[0], granularity: $0[1], targetClass: $0[2], retentionFraction: $0[3], seed: $0[4],
                              layer: $0[5], module: $0[6], nKept: $0[7], nTotal: $0[8])
            }
        }
    }

    // MARK: evaluate

    /// Writes evaluations (with per-class rows), the full model's per-sequence predictions and the
    /// evaluate ledger row in one transaction, replacing any rows those tables hold (a run whose
    /// evaluate stage migration 0010 asked to redo keeps its old rows until this commit).
    public func commitEvaluations(_ evaluations: [EvaluationRecord], predictions: [PredictionRecord] = [], ledger: StageRecord) throws {
        try write("writing evaluations") { db in
            for table in ["predictions", "evaluation_classes", "evaluations"] { try db.execute(sql: "DELETE FROM \(table)") }
            for p in predictions {
                try db.execute(sql: "INSERT INTO predictions (sequence_id, true_class, predicted_class, p_true, p_predicted) VALUES (?, ?, ?, ?, ?)",
                               arguments: [p.sequenceID, p.trueClass, p.predictedClass, p.pTrue, p.pPredicted])
            }
            for e in evaluations {
                try db.execute(sql: "INSERT INTO evaluations (method, granularity, target_class, retention_fraction, seed, n_test, n_correct, accuracy, macro_f1) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                               arguments: [e.method, e.granularity, e.targetClass, e.retentionFraction, e.seed, e.nTest, e.nCorrect, e.accuracy, e.macroF1])
                for c in e.perClass {
                    try db.execute(sql: "INSERT INTO evaluation_classes (method, granularity, target_class, retention_fraction, seed, class_index, n, n_correct, accuracy, f1) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                   arguments: [e.method, e.granularity, e.targetClass, e.retentionFraction, e.seed, c.classIndex, c.n, c.nCorrect,
                                               c.n > 0 ? Double(c.nCorrect) / Double(c.n) : nil, c.f1])
                }
            }
            try Self.insertLedger(db, ledger)
        }
    }

    /// Evaluations ordered by method, fraction (descending), seed; per-class rows included.
    public func evaluations() throws -> [EvaluationRecord] {
        try read("reading evaluations") { db in
            struct Key: Hashable { var ranking: RankingID; var fraction: Double }
            var perClass: [Key: [(classIndex: Int, n: Int, nCorrect: Int, f1: Double)]] = [:]
            for r in try Row.fetchAll(db, sql: "SELECT method, granularity, target_class, retention_fraction, seed, class_index, n, n_correct, f1 FROM evaluation_classes ORDER BY class_index") {
                let key = Key(ranking: RankingID(method: r[0], granularity: r[1], targetClass: r[2], seed: r[4]), fraction: r[3])
                perClass[key, default: []].append((r[5], r[6], r[7], r[8]))
            }
            return try Row.fetchAll(db, sql: "SELECT method, granularity, target_class, retention_fraction, seed, n_test, n_correct, accuracy, macro_f1 FROM evaluations ORDER BY granularity, method, target_class, retention_fraction DESC, seed").map {
                let key = Key(ranking: RankingID(method: $0[0], granularity: $0[1], targetClass: $0[2], seed: $0[4]), fraction: $0[3])
                return EvaluationRecord(method: $0[0], granularity: $0[1], targetClass: $0[2], retentionFraction: $0[3], seed: $0[4],
                                        nTest: $0[5], nCorrect: $0[6], accuracy: $0[7], macroF1: $0[8], perClass: perClass[key] ?? [])
            }
        }
    }

    /// The full model's test predictions, by sequence ID; empty for a run evaluated before
    /// migration 0010.
    public func predictions() throws -> [PredictionRecord] {
        try read("reading predictions") { db in
            try Row.fetchAll(db, sql: "SELECT sequence_id, true_class, predicted_class, p_true, p_predicted FROM predictions ORDER BY sequence_id").map {
                PredictionRecord(sequenceID: $0[0], trueClass: $0[1], predictedClass: $0[2], pTrue: $0[3], pPredicted: $0[4])
            }
        }
    }

    // MARK: neurons

    /// Deletes the selectivity shards computed under another content key (another model or
    /// other data). When any was deleted, or no shard is left, every `motif_selectivity` row goes
    /// too (rows of a run recorded before shards existed, or of another layout), so the table
    /// only ever holds rows of finished shards of `key`. Returns how many shards were deleted.
    /// - Throws: `StoreError`.
    public func discardSelectivityShards(otherThan key: String) throws -> Int {
        try write("discarding stale selectivity shards") { db in
            try db.execute(sql: "DELETE FROM selectivity_shards WHERE content_key != ?", arguments: [key])
            let stale = db.changesCount
            let left = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM selectivity_shards") ?? 0
            if stale > 0 || left == 0 {
                try db.execute(sql: "DELETE FROM motif_selectivity")
            }
            return stale
        }
    }

    /// The finished selectivity shards (any content key) as (first neuron, count, seconds), by first neuron.
    /// - Throws: `StoreError`.
    public func selectivityShards() throws -> [(first: Int, count: Int, seconds: Double)] {
        try read("reading selectivity shards") { db in
            try Row.fetchAll(db, sql: "SELECT first_neuron, n_neurons, seconds FROM selectivity_shards ORDER BY first_neuron").map { ($0[0], $0[1], $0[2]) }
        }
    }

    /// Commits one finished shard of neurons: its selectivity rows and its `selectivity_shards`
    /// row in one transaction (a kill after it keeps the shard; rows of a shard redone replace the old).
    /// - Throws: `StoreError`.
    public func commitSelectivityShard(first: Int, count: Int, contentKey: String, seconds: Double, rows: [SelectivityRecord]) throws {
        try write("writing selectivity shard at neuron \(first)") { db in
            let s = try db.makeStatement(sql: "INSERT OR REPLACE INTO motif_selectivity (layer, module, unit, class_index, auroc, split) VALUES (?, ?, ?, ?, ?, ?)")
            for r in rows { try s.execute(arguments: [r.layer, r.module, r.unit, r.classIndex, r.auroc, r.split]) }
            try db.execute(sql: "INSERT OR REPLACE INTO selectivity_shards (first_neuron, n_neurons, content_key, seconds) VALUES (?, ?, ?, ?)",
                           arguments: [first, count, contentKey, seconds])
        }
    }

    /// Writes the neurons stage's recovery rows and its ledger row in one transaction (the
    /// selectivity rows are already in, shard by shard).
    /// - Throws: `StoreError`.
    public func commitNeurons(recovery: [RecoveryRecord], ledger: StageRecord) throws {
        try write("writing the neurons stage") { db in
            try db.execute(sql: "DELETE FROM planted_recovery")
            for r in recovery {
                try db.execute(sql: """
                    INSERT INTO planted_recovery (method, granularity, target_class, k, mean_selectivity, random_mean, random_sd, n_random, p_value,
                    precision_at_k, random_precision) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """, arguments: [r.ranking.method, r.ranking.granularity, r.ranking.targetClass, r.k, r.meanSelectivity, r.randomMean, r.randomSD,
                                     r.nRandom, r.pValue, r.precisionAtK, r.randomPrecision])
            }
            try Self.insertLedger(db, ledger)
        }
    }

    /// Every motif-selectivity row, by layer, module, unit, class.
    public func motifSelectivity() throws -> [SelectivityRecord] {
        try read("reading motif selectivity") { db in
            try Row.fetchAll(db, sql: "SELECT layer, module, unit, class_index, auroc, split FROM motif_selectivity ORDER BY layer, module, unit, class_index").map {
                SelectivityRecord(layer: $0[0], module: $0[1], unit: $0[2], classIndex: $0[3], auroc: $0[4], split: $0[5])
            }
        }
    }

    /// Every planted-recovery row, by granularity, method, target, k.
    public func plantedRecovery() throws -> [RecoveryRecord] {
        try read("reading planted recovery") { db in
            try Row.fetchAll(db, sql: """
                SELECT method, granularity, target_class, k, mean_selectivity, random_mean, random_sd, n_random, p_value, precision_at_k, random_precision
                FROM planted_recovery ORDER BY granularity, method, target_class, k
                """).map {
                RecoveryRecord(ranking: RankingID(method: $0[0], granularity: $0[1], targetClass: $0[2]), k: $0[3], meanSelectivity: $0[4],
                               randomMean: $0[5], randomSD: $0[6], nRandom: $0[7], pValue: $0[8], precisionAtK: $0[9], randomPrecision: $0[10])
            }
        }
    }

    // MARK: report

    /// Marks a stage done that writes no rows of its own (report), with its ledger row.
    public func commitLedger(_ ledger: StageRecord) throws {
        try write("recording stage \(ledger.stage)") { db in try Self.insertLedger(db, ledger) }
    }
}

/// One pooled per-sequence embedding (`kneuron embed`).
public struct EmbeddingRecord: Sendable, Equatable {
    /// SHA-256 (hex) of the checkpoint's model.safetensors.
    public var modelSHA256: String
    /// FASTA record ID.
    public var sequenceID: String
    /// 0 = embeddings, i = output of block i, L = last_hidden_state (after the final LayerNorm).
    public var layer: Int
    /// `mean` (over residues) or `cls` (position 0).
    public var pooling: String
    /// The vector (hidden size H values).
    public var vector: [Float]
    /// Residues embedded (after cropping).
    public var residues: Int
    /// Whether the sequence was cropped.
    public var cropped: Bool

    /// Creates a record from its fields.
    public init(modelSHA256: String, sequenceID: String, layer: Int, pooling: String, vector: [Float], residues: Int, cropped: Bool) {
        self.modelSHA256 = modelSHA256; self.sequenceID = sequenceID; self.layer = layer; self.pooling = pooling
        self.vector = vector; self.residues = residues; self.cropped = cropped
    }
}

extension RunDatabase {
    /// Writes embeddings in one transaction; a row with the same (model, sequence, layer,
    /// pooling) is replaced. Returns the number of rows written.
    @discardableResult
    public func commitEmbeddings(_ records: [EmbeddingRecord]) throws -> Int {
        try write("writing embeddings") { db in
            let st = try db.makeStatement(sql: "INSERT OR REPLACE INTO embeddings (model_sha256, sequence_id, layer, pooling, dim, vector, n_residues, cropped) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
            for r in records {
                try st.execute(arguments: [r.modelSHA256, r.sequenceID, r.layer, r.pooling, r.vector.count,
                                           Blob.pack(r.vector.map { $0.bitPattern }), r.residues, r.cropped ? 1 : 0])
            }
            return records.count
        }
    }

    /// The stored embedding vectors of (model, layer, pooling) by sequence ID.
    public func embeddings(modelSHA256: String, layer: Int, pooling: String) throws -> [String: [Float]] {
        try read("reading embeddings") { db in
            var out: [String: [Float]] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT sequence_id, vector FROM embeddings WHERE model_sha256 = ? AND layer = ? AND pooling = ?",
                                        arguments: [modelSHA256, layer, pooling]) {
                let data: Data = row[1]
                out[row[0]] = data.withUnsafeBytes { raw in
                    (0 ..< data.count / 4).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
                }
            }
            return out
        }
    }
}
