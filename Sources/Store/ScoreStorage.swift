import Foundation
import GRDB
import GRDBSQLite

/// How score sets and shard sums are laid out in the database (migration 0007), sized for
/// the big models: every score of a set is a float32 in `score_rows` (one BLOB per output unit
/// of each block, 4 bytes a score), only its best `rankedRows` ranks are rows of
/// `score_values` (score, rank), and shard partial sums are float64 chunks of at most
/// `chunkValues` values, folded in shard order into one running total as shards finish.
public struct ScoreStorage: Sendable, Equatable {
    /// Ranks 1 ... rankedRows of a set get a row in `score_values` (every rank of a smaller set).
    public var rankedRows: Int
    /// float64 values per `shard_sums` chunk (8 Mi values = 64 MiB, far below SQLite's 1 GB value limit).
    public var chunkValues: Int

    /// What kneuron writes: 1,000,000 ranked rows, 64 MiB chunks. The test hooks
    /// `KNEURON_DEBUG_RANKED_ROWS` and `KNEURON_DEBUG_CHUNK_VALUES` in `environment` override them.
    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        rankedRows = environment["KNEURON_DEBUG_RANKED_ROWS"].flatMap(Int.init).map { max(1, $0) } ?? 1_000_000
        chunkValues = environment["KNEURON_DEBUG_CHUNK_VALUES"].flatMap(Int.init).map { max(1, $0) } ?? 8 << 20
    }

    /// Explicit limits (tests).
    public init(rankedRows: Int, chunkValues: Int) {
        self.rankedRows = max(1, rankedRows); self.chunkValues = max(1, chunkValues)
    }

    /// Key stride of a score set in `score_values.id` (migration 0003): a row's id is
    /// `set_id * setStride + canonical index`.
    static let setStride: Int64 = 1 << 32
}

/// SQLite's SQLITE_TRANSIENT destructor (a C macro Swift does not import): SQLite copies the value.
private let sqliteTransient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

/// A shard-sum group layout: sequences per group (one group, or one per class) and the sums
/// of the groups that have sequences, concatenated in group order.
struct GroupedSums {
    var counts: [Int]
    var sums: [Double]

    /// Groups with at least one sequence, in order (the groups `sums` holds).
    var present: [Int] { counts.indices.filter { counts[$0] > 0 } }

    /// Adds `other` group by group (element by element, `self` first: the fixed summation order
    /// that makes the result independent of how shards were interrupted or distributed).
    /// A group that `self` does not hold yet starts from zeros, as the first shard does.
    /// - Throws: `StoreError.corrupt` when the group counts or widths disagree.
    mutating func add(_ other: GroupedSums, what: String) throws {
        guard counts.count == other.counts.count else {
            throw StoreError.corrupt("\(what) has \(other.counts.count) class groups, the running total \(counts.count); run with --force attribute")
        }
        let mine = present, theirs = other.present
        let width = theirs.isEmpty ? 0 : other.sums.count / theirs.count
        guard other.sums.count == theirs.count * width, mine.isEmpty || sums.count == mine.count * width else {
            throw StoreError.corrupt("\(what) holds \(other.sums.count) sums for \(theirs.count) groups, the running total \(sums.count) for \(mine.count); "
                + "run with --force attribute")
        }
        var newCounts = counts
        for g in counts.indices { newCounts[g] += other.counts[g] }
        let merged = newCounts.indices.filter { newCounts[$0] > 0 }
        if merged != mine {   // a group appears: lay out the groups again, new ones as zeros
            var out = [Double](repeating: 0, count: merged.count * width)
            for (k, g) in mine.enumerated() {
                let to = merged.firstIndex(of: g)!
                out.withUnsafeMutableBufferPointer { o in
                    sums.withUnsafeBufferPointer { s in
                        for i in 0 ..< width { o[to * width + i] = s[k * width + i] }
                    }
                }
            }
            sums = out
        }
        sums.withUnsafeMutableBufferPointer { s in
            other.sums.withUnsafeBufferPointer { o in
                for (k, g) in theirs.enumerated() {
                    let to = merged.firstIndex(of: g)!
                    for i in 0 ..< width { s[to * width + i] += o[k * width + i] }
                }
            }
        }
        counts = newCounts
    }
}

/// The running total of every shard of one (method, granularity), ready to turn into scores.
public struct ShardTotal: Sendable, Equatable {
    /// Shards added (0 ..< nFolded, in shard order).
    public var nFolded: Int
    /// Sequences per group: one group, or one per class (per_class targets).
    public var counts: [Int]
    /// The sums of the groups with sequences (`counts[g] > 0`), concatenated in group order.
    public var sums: [Double]
}

extension RunDatabase {
    // MARK: Score sets

    /// Inserts one score set: its layout (`score_sets`, `score_blocks`), every score as float32
    /// (`score_rows`, unless `set.storesScores` is false) and rows (score, rank) for ranks
    /// 1 ... `storage.rankedRows` (`score_values`). Ranks are `ScoreRanking`'s (set.ranks when
    /// given). Returns the number of scores in the set.
    /// - Throws: `StoreError.corrupt` for a NaN or infinite score (nothing is written);
    ///   GRDB's `DatabaseError` on a SQLite failure, which the caller's `write` turns into a `StoreError`.
    static func insertScores(_ db: Database, _ set: ScoreSet, storage: ScoreStorage) throws -> Int {
        let scores = set.values, n = scores.count
        precondition(n == set.layout.count, "score array does not match its layout")
        precondition(Int64(n) < ScoreStorage.setStride, "a score set holds fewer than 2^32 scores")
        if let bad = scores.firstIndex(where: { !$0.isFinite }) {
            throw StoreError.corrupt("score set \(set.id) has a non-finite score (\(scores[bad])) at canonical index \(bad): "
                + "the model or its attribution diverged, or the shards' partial sums in the database are damaged; nothing of it was stored. "
                + "Run with --force attribute")
        }
        try db.execute(sql: "INSERT INTO score_sets (method, granularity, target_class, seed, modules, n_layers, n_scores) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       arguments: [set.id.method, set.id.granularity, set.id.targetClass, set.id.seed,
                                   set.layout.modules.joined(separator: ","), set.layout.layers, n])
        let setID = db.lastInsertedRowID
        let blocks = try db.makeStatement(sql: "INSERT INTO score_blocks (set_id, block_index, layer, module, n_rows, n_cols, offset) VALUES (?, ?, ?, ?, ?, ?, ?)")
        for (i, b) in set.layout.blocks.enumerated() {
            try blocks.execute(arguments: [setID, i, b.layer, b.module, b.rows, b.cols, b.offset])
        }
        // all_scores enumerates columns from score_columns: make it cover the widest block.
        let width = set.layout.blocks.map(\.cols).max() ?? 0
        try db.execute(sql: """
            WITH RECURSIVE c(i) AS (SELECT COALESCE((SELECT MAX(col) + 1 FROM score_columns), 0) UNION ALL SELECT i + 1 FROM c WHERE i + 1 < ?)
            INSERT INTO score_columns (col) SELECT i FROM c WHERE i < ?
            """, arguments: [width, width])
        if set.storesScores {
            let st = try db.makeStatement(sql: "INSERT INTO score_rows (set_id, block_index, row, scores) VALUES (?, ?, ?, ?)")
            let h = st.sqliteStatement
            try scores.withUnsafeBufferPointer { sc in
                for (i, b) in set.layout.blocks.enumerated() {
                    for r in 0 ..< b.rows {
                        sqlite3_bind_int64(h, 1, setID)
                        sqlite3_bind_int64(h, 2, Int64(i))
                        sqlite3_bind_int64(h, 3, Int64(r))
                        let start = sc.baseAddress! + b.offset + r * b.cols
                        // float32 in the host's byte order, which is little-endian on every platform kneuron builds for.
                        sqlite3_bind_blob(h, 4, start, Int32(b.cols * 4), nil)   // SQLITE_STATIC: valid until the step below
                        try step(h, db)
                    }
                }
            }
        }
        // Ranked rows in id order (SQLite appends to the table's B-tree).
        var ranked: [(index: Int32, rank: Int32)]
        if n <= storage.rankedRows {
            let rank = set.ranks ?? ScoreRanking.ranks(scores)
            ranked = rank.enumerated().map { (Int32($0.offset), $0.element) }
        } else {
            ranked = ScoreRanking.top(scores, count: storage.rankedRows).enumerated().map { ($0.element, Int32($0.offset + 1)) }
            ranked.sort { $0.index < $1.index }
        }
        let base = setID * ScoreStorage.setStride
        let st = try db.makeStatement(sql: "INSERT INTO score_values (id, score, rank) VALUES (?, ?, ?)")
        let h = st.sqliteStatement
        for (i, r) in ranked {
            sqlite3_bind_int64(h, 1, base + Int64(i))
            sqlite3_bind_double(h, 2, Double(scores[Int(i)]))
            sqlite3_bind_int64(h, 3, Int64(r))
            try step(h, db)
        }
        sqlite3_clear_bindings(h)
        return n
    }

    /// One step of a bulk insert through SQLite's C API on GRDB's prepared statement (GRDB's
    /// per-row argument arrays took most of the time).
    /// - Throws: the failure as GRDB's `DatabaseError`, so `wrap` turns SQLITE_FULL /
    ///   SQLITE_READONLY into their messages.
    private static func step(_ h: OpaquePointer, _ db: Database) throws {
        let rc = sqlite3_step(h)
        sqlite3_reset(h)
        if rc != SQLITE_DONE {
            throw DatabaseError(resultCode: ResultCode(rawValue: rc), message: String(cString: sqlite3_errmsg(db.sqliteConnection)))
        }
    }

    /// Deletes the score sets matching `condition` (SQL on `score_sets`) and their rows.
    /// Returns the number of scores deleted.
    static func deleteScoreSets(_ db: Database, where condition: String) throws -> Int {
        var n = 0
        for row in try Row.fetchAll(db, sql: "SELECT set_id, n_scores FROM score_sets WHERE \(condition)") {
            let id: Int64 = row[0]
            try db.execute(sql: "DELETE FROM score_values WHERE id >= ? AND id < ?",
                           arguments: [id * ScoreStorage.setStride, (id + 1) * ScoreStorage.setStride])
            try db.execute(sql: "DELETE FROM score_rows WHERE set_id = ?", arguments: [id])
            try db.execute(sql: "DELETE FROM score_blocks WHERE set_id = ?", arguments: [id])
            n += row[1] as Int
        }
        try db.execute(sql: "DELETE FROM score_sets WHERE \(condition)")
        return n
    }

    /// Scores of a ranking in its layout's order ([] when the set was not written): from
    /// `score_rows`, or for a set that stores only ranked rows (the random baseline) from
    /// `score_values` when those hold every score.
    /// - Throws: `StoreError.corrupt` when a stored row does not match its block, or when the
    ///   set keeps only its best ranks (a random baseline larger than `rankedRows`: its scores
    ///   are regenerated from the seed by its producer, not read); `StoreError.sqlite`.
    public func scores(_ set: RankingID) throws -> [Float] {
        try read("reading the scores of \(set)") { db in
            guard let s = try Row.fetchOne(db, sql: "SELECT set_id, n_scores FROM score_sets WHERE method = ? AND granularity = ? AND target_class = ? AND seed = ?",
                                           arguments: [set.method, set.granularity, set.targetClass, set.seed])
            else { return [] }
            let id: Int64 = s[0], n: Int = s[1]
            let blocks = try Row.fetchAll(db, sql: "SELECT block_index, n_rows, n_cols, offset FROM score_blocks WHERE set_id = ?", arguments: [id])
                .reduce(into: [Int: (rows: Int, cols: Int, offset: Int)]()) { $0[$1[0]] = ($1[1], $1[2], $1[3]) }
            var out = [Float](repeating: 0, count: n)
            var filled = 0
            let rows = try Row.fetchCursor(db, sql: "SELECT block_index, row, scores FROM score_rows WHERE set_id = ?", arguments: [id])
            try out.withUnsafeMutableBufferPointer { o in
                while let r = try rows.next() {
                    let blockIndex: Int = r[0], row: Int = r[1]
                    let bytes: Data = r[2]
                    guard let b = blocks[blockIndex], row >= 0, row < b.rows, bytes.count == b.cols * 4 else {
                        throw StoreError.corrupt("score_rows of \(set) block \(blockIndex) row \(row) does not match the block's layout "
                            + "(the database is damaged or was edited); run with --force attribute")
                    }
                    bytes.withUnsafeBytes { raw in
                        for c in 0 ..< b.cols {
                            o[b.offset + row * b.cols + c] = Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * c, as: UInt32.self)))
                        }
                    }
                    filled += b.cols
                }
            }
            if filled == n {
                if let bad = out.firstIndex(where: { !$0.isFinite }) {
                    throw StoreError.corrupt("score set \(set) holds a non-finite score (\(out[bad])) at canonical index \(bad) (the database is damaged "
                        + "or was edited: kneuron never writes one); run with --force attribute")
                }
                return out
            }
            guard filled == 0 else {
                throw StoreError.corrupt("score set \(set) stores \(filled) of its \(n) scores (the database is damaged or was edited); run with --force attribute")
            }
            let ranked = try Row.fetchAll(db, sql: "SELECT id - ?, score FROM score_values WHERE id >= ? AND id < ?",
                                          arguments: [id * ScoreStorage.setStride, id * ScoreStorage.setStride, (id + 1) * ScoreStorage.setStride])
            guard ranked.count == n else {
                if set.method == "random" {
                    throw StoreError.corrupt("score set \(set) keeps only its \(ranked.count) best ranks of \(n); its scores are regenerated from the seed, not read")
                }
                throw StoreError.corrupt("score set \(set) has no score_rows and only \(ranked.count) of its \(n) ranked rows (the database is damaged or "
                    + "was edited); run with --force attribute")
            }
            for r in ranked { out[r[0] as Int] = Float(r[1] as Double) }
            return out
        }
    }

    /// The stored layout of a score set (`score_sets` and `score_blocks`), nil when the set was not written.
    /// - Throws: `StoreError.sqlite`.
    public func scoreLayout(_ set: RankingID) throws -> ScoreSetLayout? {
        try read("reading the layout of \(set)") { db in
            guard let s = try Row.fetchOne(db, sql: "SELECT set_id, modules, n_layers FROM score_sets WHERE method = ? AND granularity = ? AND target_class = ? AND seed = ?",
                                           arguments: [set.method, set.granularity, set.targetClass, set.seed])
            else { return nil }
            let id: Int64 = s[0], modules: String = s[1]
            let blocks = try Row.fetchAll(db, sql: "SELECT layer, module, n_rows, n_cols, offset FROM score_blocks WHERE set_id = ? ORDER BY block_index", arguments: [id])
                .map { ScoreSetLayout.Block(layer: $0[0], module: $0[1], rows: $0[2], cols: $0[3], offset: $0[4]) }
            return ScoreSetLayout(modules: modules.split(separator: ",").map(String.init), layers: s[2], blocks: blocks)
        }
    }

    /// Scores of the weight-granularity, true-class set of (method, seed) (kneuron 0.1's only kind).
    /// - Throws: as `scores(_:)`.
    public func scores(method: String, seed: Int = 0) throws -> [Float] { try scores(RankingID(method: method, seed: seed)) }

    /// Ranks (1 = highest) of a ranking in its layout's order ([] when not written):
    /// `ScoreRanking.ranks` of its scores, which is what the ranked rows hold.
    /// - Throws: as `scores(_:)`.
    public func ranks(_ set: RankingID) throws -> [Int] {
        ScoreRanking.ranks(try scores(set)).map(Int.init)
    }

    /// Ranks of the weight-granularity, true-class set of (method, seed).
    /// - Throws: as `scores(_:)`.
    public func ranks(method: String, seed: Int = 0) throws -> [Int] { try ranks(RankingID(method: method, seed: seed)) }

    // MARK: Shards

    /// Commits one finished shard: its done mark (`shards`), its completeness rows, and its
    /// partial sums, in one transaction. The sums are added to the running total when every
    /// earlier shard is in it (then the shards finished ahead of it that follow are added too,
    /// in shard order, and their stored sums deleted); otherwise they are stored in chunks until
    /// then. Committing a shard that is already recorded is a no-op (returns false), so a
    /// duplicate worker can never count a shard twice. Shards of another content key are deleted
    /// in the same transaction, so shards of two keys never coexist.
    /// - Parameter requiring: the upstream ledger row the shard was computed from (the train
    ///   stage and its key); when another process has redone or discarded that stage since,
    ///   nothing is written and `StoreError.superseded` is thrown.
    /// - Parameter discarded: called with the number of shards of another content key deleted
    ///   in this transaction when there were any (another process committed them meanwhile), so
    ///   the caller can say so.
    /// - Throws: `StoreError.superseded`, `.corrupt` (group layouts that disagree), `.diskFull`, `.readOnly`, `.sqlite`.
    @discardableResult
    public func commitShard(_ shard: ShardRecord, completeness: [CompletenessRecord], requiring: LedgerRequirement? = nil,
                            discarded: ((Int) -> Void)? = nil) throws -> Bool {
        try write("committing shard \(shard.method)/\(shard.granularity)/\(shard.shardIndex)") { db in
            try Self.requireLedger(db, requiring, doing: "attributing")
            let stale = try Self.deleteShards(db, otherThan: shard.contentKey)
            if stale > 0 { discarded?(stale) }
            try db.execute(sql: "INSERT OR IGNORE INTO shards (method, granularity, shard_index, content_key, n_sequences, class_counts, seconds) VALUES (?, ?, ?, ?, ?, ?, ?)",
                           arguments: [shard.method, shard.granularity, shard.shardIndex, shard.contentKey, shard.nSequences,
                                       shard.classCounts.map { Blob.pack($0.map(Int64.init)) }, shard.seconds])
            guard db.changesCount == 1 else { return false }
            // OR REPLACE: a shard recomputed after its done mark was lost replaces its old rows.
            let st = try db.makeStatement(sql: "INSERT OR REPLACE INTO ig_completeness (sequence_id, granularity, layer, module, shard_index, target_class, p_full, p_baseline, attribution_sum, gap) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
            for c in completeness {
                try st.execute(arguments: [c.sequenceID, c.granularity, c.layer, c.module, c.shardIndex, c.targetClass, c.pFull, c.pBaseline, c.attributionSum, c.gap])
            }
            try fold(db, method: shard.method, granularity: shard.granularity, contentKey: shard.contentKey,
                     incoming: (shard.shardIndex, GroupedSums(counts: shard.classCounts ?? [shard.nSequences], sums: shard.sums)))
            return true
        }
    }

    /// Adds to the running total of (method, granularity) every committed shard that directly
    /// follows it (and `incoming`, which is not stored yet, when it is one of them; else stores
    /// `incoming`'s sums in chunks), in shard order, element by element from zeros. When every
    /// addend holds the same groups as the total (always, without per_class targets) this runs
    /// chunk by chunk, so memory stays at one chunk beside `incoming`; otherwise (a class group
    /// appears) the total is laid out again in memory. Internal: runs inside a write transaction.
    /// - Throws: `StoreError.corrupt` for a committed shard without sums or group layouts that disagree.
    func fold(_ db: Database, method: String, granularity: String, contentKey: String,
              incoming: (index: Int, sums: GroupedSums)?) throws {
        let meta = try Row.fetchOne(db, sql: "SELECT n_folded, class_counts FROM shard_totals WHERE method = ? AND granularity = ?",
                                    arguments: [method, granularity])
        let folded: Int = meta?[0] ?? 0
        let committed = Set(try Int.fetchAll(db, sql: "SELECT shard_index FROM shards WHERE method = ? AND granularity = ?", arguments: [method, granularity]))
        // The running total holds exactly shards 0 ..< folded: each has its done mark, none still
        // waits in shard_sums, and their sequences add up to the total's.
        if folded > 0 {
            let waiting = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM shard_sums WHERE method = ? AND granularity = ? AND shard_index >= 0 AND shard_index < ?",
                                           arguments: [method, granularity, folded]) ?? 0
            let sequences = try Int.fetchOne(db, sql: "SELECT COALESCE(SUM(n_sequences), 0) FROM shards WHERE method = ? AND granularity = ? AND shard_index < ?",
                                             arguments: [method, granularity, folded]) ?? 0
            let totalSequences = try meta.map { try Blob.unpack($0[1], as: Int64.self).reduce(0, +) } ?? 0
            guard (0 ..< folded).allSatisfy(committed.contains), waiting == 0, Int64(sequences) == totalSequences else {
                throw StoreError.corrupt("the running total of \(method)/\(granularity) claims shards 0 ..< \(folded) but the shards table disagrees "
                    + "(the database is damaged or was edited); run with --force attribute")
            }
        }
        // A shard inside the total already (its done mark was lost and it was computed again): its
        // sums are in the total, in order; nothing to add.
        if let incoming, incoming.index < folded { return }
        if let incoming, incoming.index != folded {
            try writeChunks(db, method: method, granularity: granularity, shardIndex: incoming.index, incoming.sums.sums)
            return
        }
        guard committed.contains(folded) else { return }
        // The shards to add, in shard order: their group counts and, for `incoming`, its sums.
        var addends: [(index: Int, counts: [Int], sums: [Double]?)] = []
        var next = folded
        while committed.contains(next) {
            if let incoming, incoming.index == next {
                addends.append((next, incoming.sums.counts, incoming.sums.sums))
            } else {
                let row = try Row.fetchOne(db, sql: "SELECT n_sequences, class_counts FROM shards WHERE method = ? AND granularity = ? AND shard_index = ?",
                                           arguments: [method, granularity, next])!
                let counts: Data? = row[1]
                addends.append((next, try counts.map { try Blob.unpack($0, as: Int64.self).map(Int.init) } ?? [row[0]], nil))
            }
            next += 1
        }
        let totalCounts: [Int]? = folded > 0 ? try meta.map { try Blob.unpack($0[1], as: Int64.self).map(Int.init) } : nil
        var counts = totalCounts ?? [Int](repeating: 0, count: addends[0].counts.count)
        if let layout = try streamingLayout(db, method: method, granularity: granularity, totalCounts: totalCounts, addends: addends) {
            for a in addends { for g in counts.indices where g < a.counts.count { counts[g] += a.counts[g] } }
            try foldInChunks(db, method: method, granularity: granularity, count: layout, hasTotal: totalCounts != nil, addends: addends)
        } else {
            var total = GroupedSums(counts: counts, sums: totalCounts == nil ? [] : try readChunks(db, method: method, granularity: granularity, shardIndex: -1))
            for a in addends {
                let what = "shard \(method)/\(granularity)/\(a.index)"
                let sums = try a.sums ?? readChunks(db, method: method, granularity: granularity, shardIndex: a.index)
                guard !sums.isEmpty else { throw StoreError.corrupt("\(what) is recorded as done but its sums are missing; run with --force attribute") }
                try total.add(GroupedSums(counts: a.counts, sums: sums), what: what)
            }
            try writeChunks(db, method: method, granularity: granularity, shardIndex: -1, total.sums)
            counts = total.counts
        }
        for a in addends where a.sums == nil {
            try db.execute(sql: "DELETE FROM shard_sums WHERE method = ? AND granularity = ? AND shard_index = ?", arguments: [method, granularity, a.index])
        }
        try db.execute(sql: "INSERT OR REPLACE INTO shard_totals (method, granularity, content_key, n_folded, class_counts) VALUES (?, ?, ?, ?, ?)",
                       arguments: [method, granularity, contentKey, next, Blob.pack(counts.map(Int64.init))])
    }

    /// The number of values of every addend and of the total when the fold can run chunk by
    /// chunk: the same groups with sequences everywhere (so element i means the same thing in
    /// each), the same length, and stored chunks of `storage.chunkValues` values (the last one
    /// shorter). Nil otherwise (a group appears, or sums carried over by migration 0007 as one chunk).
    private func streamingLayout(_ db: Database, method: String, granularity: String, totalCounts: [Int]?,
                                 addends: [(index: Int, counts: [Int], sums: [Double]?)]) throws -> Int? {
        func present(_ c: [Int]) -> [Int] { c.indices.filter { c[$0] > 0 } }
        let groups = present(addends[0].counts)
        guard addends.allSatisfy({ $0.counts.count == addends[0].counts.count && present($0.counts) == groups }),
              totalCounts.map({ $0.count == addends[0].counts.count && present($0) == groups }) ?? true else { return nil }
        func chunkLengths(_ index: Int) throws -> [Int] {
            try Int.fetchAll(db, sql: "SELECT length(sums) FROM shard_sums WHERE method = ? AND granularity = ? AND shard_index = ? ORDER BY chunk_index",
                             arguments: [method, granularity, index])
        }
        func uniform(_ lengths: [Int], count: Int) -> Bool {
            let per = storage.chunkValues
            return lengths.count == (count + per - 1) / per && lengths.enumerated().allSatisfy { $0.element == 8 * min(per, count - $0.offset * per) }
        }
        let count: Int
        if let sums = addends.first(where: { $0.sums != nil })?.sums { count = sums.count } else { count = try chunkLengths(addends[0].index).reduce(0, +) / 8 }
        guard count > 0 else { return nil }
        for a in addends {
            if let sums = a.sums { guard sums.count == count else { return nil } } else { guard uniform(try chunkLengths(a.index), count: count) else { return nil } }
        }
        if totalCounts != nil { guard uniform(try chunkLengths(-1), count: count) else { return nil } }
        return count
    }

    /// The chunk-by-chunk fold: for each chunk of `count` values, the total's chunk (zeros when
    /// there is no total yet) plus each addend's chunk in order, written back as the total's chunk.
    private func foldInChunks(_ db: Database, method: String, granularity: String, count: Int, hasTotal: Bool,
                              addends: [(index: Int, counts: [Int], sums: [Double]?)]) throws {
        let per = storage.chunkValues
        let st = try db.makeStatement(sql: "INSERT OR REPLACE INTO shard_sums (method, granularity, shard_index, chunk_index, sums) VALUES (?, ?, -1, ?, ?)")
        let h = st.sqliteStatement
        for (c, start) in stride(from: 0, to: count, by: per).enumerated() {
            let n = min(per, count - start)
            var chunk = hasTotal ? try readChunk(db, method: method, granularity: granularity, shardIndex: -1, chunk: c)
                                 : [Double](repeating: 0, count: n)
            for a in addends {
                let part = try a.sums.map { Array($0[start ..< start + n]) } ?? readChunk(db, method: method, granularity: granularity, shardIndex: a.index, chunk: c)
                chunk.withUnsafeMutableBufferPointer { t in part.withUnsafeBufferPointer { p in for i in 0 ..< n { t[i] += p[i] } } }
            }
            try chunk.withUnsafeBufferPointer { v in
                sqlite3_bind_text(h, 1, method, -1, sqliteTransient)
                sqlite3_bind_text(h, 2, granularity, -1, sqliteTransient)
                sqlite3_bind_int64(h, 3, Int64(c))
                sqlite3_bind_blob(h, 4, v.baseAddress!, Int32(n * 8), nil)   // SQLITE_STATIC: valid until the step below
                try Self.step(h, db)
            }
        }
        sqlite3_clear_bindings(h)
    }

    /// One stored chunk's values.
    private func readChunk(_ db: Database, method: String, granularity: String, shardIndex: Int, chunk: Int) throws -> [Double] {
        guard let data = try Data.fetchOne(db, sql: "SELECT sums FROM shard_sums WHERE method = ? AND granularity = ? AND shard_index = ? AND chunk_index = ?",
                                           arguments: [method, granularity, shardIndex, chunk]) else {
            throw StoreError.corrupt("chunk \(chunk) of the shard sums of \(method)/\(granularity)/\(shardIndex) is missing; run with --force attribute")
        }
        guard data.count % 8 == 0 else {
            throw StoreError.corrupt("chunk \(chunk) of the shard sums of \(method)/\(granularity)/\(shardIndex) is not a whole number of float64 values; "
                + "run with --force attribute")
        }
        return Self.doubles(data)
    }

    /// Little-endian float64 values of a BLOB (its length is a multiple of 8).
    static func doubles(_ data: Data) -> [Double] {
        data.withUnsafeBytes { raw in
            (0 ..< data.count / 8).map { Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * $0, as: UInt64.self))) }
        }
    }

    /// Replaces the chunks of one shard (or of the running total, index -1) by `values`.
    private func writeChunks(_ db: Database, method: String, granularity: String, shardIndex: Int, _ values: [Double]) throws {
        try db.execute(sql: "DELETE FROM shard_sums WHERE method = ? AND granularity = ? AND shard_index = ?", arguments: [method, granularity, shardIndex])
        let st = try db.makeStatement(sql: "INSERT INTO shard_sums (method, granularity, shard_index, chunk_index, sums) VALUES (?, ?, ?, ?, ?)")
        let h = st.sqliteStatement
        try values.withUnsafeBufferPointer { v in
            var chunk = 0
            for start in stride(from: 0, to: v.count, by: storage.chunkValues) {
                let count = min(storage.chunkValues, v.count - start)
                sqlite3_bind_text(h, 1, method, -1, sqliteTransient)
                sqlite3_bind_text(h, 2, granularity, -1, sqliteTransient)
                sqlite3_bind_int64(h, 3, Int64(shardIndex))
                sqlite3_bind_int64(h, 4, Int64(chunk))
                // float64 in the host's byte order (little-endian on every platform kneuron builds for).
                sqlite3_bind_blob(h, 5, v.baseAddress! + start, Int32(count * 8), nil)   // SQLITE_STATIC: valid until the step below
                try Self.step(h, db)
                chunk += 1
            }
        }
        sqlite3_clear_bindings(h)
    }

    /// The values of one shard's (or the running total's) chunks, in chunk order ([] when none).
    private func readChunks(_ db: Database, method: String, granularity: String, shardIndex: Int) throws -> [Double] {
        var out: [Double] = []
        let rows = try Row.fetchCursor(db, sql: "SELECT sums FROM shard_sums WHERE method = ? AND granularity = ? AND shard_index = ? ORDER BY chunk_index",
                                       arguments: [method, granularity, shardIndex])
        while let r = try rows.next() {
            let data: Data = r[0]
            guard data.count % 8 == 0 else {
                throw StoreError.corrupt("shard sums of \(method)/\(granularity)/\(shardIndex) are not a whole number of float64 values; run with --force attribute")
            }
            out += Self.doubles(data)
        }
        return out
    }

    /// Folds every committed shard of (method, granularity) under `contentKey` that can be
    /// added in order (shards carried over by migration 0007 are stored unfolded) and returns
    /// the running total, or nil when there is none (no shard committed, shards of another
    /// content key, or the sums already freed because the scores were written).
    /// - Throws: `StoreError.corrupt`, `.diskFull`, `.readOnly`, `.sqlite`.
    public func shardTotal(method: String, granularity: String, contentKey: String) throws -> ShardTotal? {
        try write("adding the shards of \(method)/\(granularity)") { db in
            let stale = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM shards WHERE content_key != ?", arguments: [contentKey]) ?? 0
            guard stale == 0 else { return nil }
            // No sums at all: none committed, or the scores were written and the sums freed
            // (another task of an array job combined first).
            guard try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM shard_sums WHERE method = ? AND granularity = ?)",
                                    arguments: [method, granularity]) == true else { return nil }
            try fold(db, method: method, granularity: granularity, contentKey: contentKey, incoming: nil)
            guard let meta = try Row.fetchOne(db, sql: "SELECT n_folded, class_counts FROM shard_totals WHERE method = ? AND granularity = ? AND content_key = ?",
                                              arguments: [method, granularity, contentKey]) else { return nil }
            return ShardTotal(nFolded: meta[0], counts: try Blob.unpack(meta[1], as: Int64.self).map(Int.init), sums: try readChunks(db, method: method, granularity: granularity, shardIndex: -1))
        }
    }
}
