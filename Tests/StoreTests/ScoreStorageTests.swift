import Foundation
import GRDB
import XCTest
@testable import Store

/// Storage for the big models (migration 0007): float32 score rows decoded in SQL, ranked rows
/// for the best ranks only, shard sums in chunks folded in shard order whatever the commit order.
final class ScoreStorageTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("kneuron-storage-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func open(rankedRows: Int = 1_000_000, chunkValues: Int = 8 << 20) throws -> RunDatabase {
        try RunDatabase(path: dir.appendingPathComponent("run.sqlite").path, storage: ScoreStorage(rankedRows: rankedRows, chunkValues: chunkValues))
    }

    /// Scores with ties, both zeros, subnormals, negatives and the float32 extremes.
    func awkwardScores(_ n: Int, seed: UInt64) -> [Float] {
        var state = seed
        func next() -> UInt64 { state &+= 0x9E37_79B9_7F4A_7C15; var z = state; z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9; z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB; return z ^ (z >> 31) }
        let special: [Float] = [0, -0.0, .leastNonzeroMagnitude, -.leastNonzeroMagnitude, .leastNormalMagnitude, .greatestFiniteMagnitude, -.greatestFiniteMagnitude, 1, -1, 0.5]
        return (0 ..< n).map { _ in
            let r = next()
            switch r % 4 {
            case 0: return special[Int(r >> 8) % special.count]
            case 1: return Float(Int(r >> 8) % 7) / 4          // many exact ties
            default: return Float(bitPattern: UInt32(truncatingIfNeeded: r >> 16) & 0xFF7F_FFFF)   // any finite bit pattern
            }
        }.map { $0.isFinite ? $0 : 1 }
    }

    /// `ScoreRanking.top` is exactly the first k of the full ranking (score descending, ties by
    /// index, -0.0 = 0.0), for k from 1 to n and score vectors full of ties.
    func testTopEqualsThePrefixOfTheFullRanking() {
        for seed in 1 ... 8 as ClosedRange<UInt64> {
            let scores = awkwardScores(3000, seed: seed)
            let rank = ScoreRanking.ranks(scores)
            var order = [Int32](repeating: 0, count: scores.count)
            for (i, r) in rank.enumerated() { order[Int(r) - 1] = Int32(i) }
            for k in [1, 2, 7, 100, 1499, 1500, 2999, 3000, 5000] {
                XCTAssertEqual(ScoreRanking.top(scores, count: k), Array(order.prefix(k)), "seed \(seed), k \(k)")
            }
        }
        XCTAssertEqual(ScoreRanking.top([0, -0.0, 0, -0.0], count: 3), [0, 1, 2], "both zeros tie, by index")
        XCTAssertEqual(ScoreRanking.top([], count: 3), [])
    }

    /// A set larger than the ranked-row limit: every score round-trips exactly through
    /// `score_rows` (Swift and the `all_scores` view's SQL decoding), `score_values` holds
    /// exactly ranks 1 ... limit of the full ranking, and `all_scores.rank` is that rank or NULL.
    func testFloat32RowsDecodeExactlyAndOnlyTheBestRanksHaveRows() throws {
        let db = try open(rankedRows: 20)
        let layout = ScoreSetLayout(modules: ["key", "intermediate"], layers: 1, blocks: [
            .init(layer: 0, module: "key", rows: 5, cols: 7, offset: 0),
            .init(layer: 0, module: "intermediate", rows: 9, cols: 1, offset: 35)])
        let scores = awkwardScores(layout.count, seed: 42)
        let id = RankingID(method: "integrated_gradients", granularity: "weight")
        XCTAssertEqual(try db.commitScores([ScoreSet(id: id, layout: layout, values: scores)], ledger: StageRecord(stage: "attribute", contentKey: "k", rowsWritten: 0, seconds: 0)), 44)
        XCTAssertEqual(try db.scores(id).map(\.bitPattern), scores.map { $0.bitPattern }, "bit-exact, -0.0 included")
        let rank = ScoreRanking.ranks(scores)
        let sql = try db.query("SELECT module, row, col, score, rank FROM all_scores ORDER BY module DESC, row, col").rows
        XCTAssertEqual(sql.count, 44)
        for (i, r) in sql.enumerated() {
            let (module, row, col) = i < 35 ? ("key", i / 7, i % 7) : ("intermediate", i - 35, 0)
            XCTAssertEqual(Array(r[0 ..< 3]), [module, "\(row)", "\(col)"])
            XCTAssertEqual(Double(r[3]!), Double(scores[i]), "score \(i) = \(scores[i])")
            XCTAssertEqual(r[3]!.hasPrefix("-"), scores[i].sign == .minus, "sign of score \(i)")
            XCTAssertEqual(r[4], rank[i] <= 20 ? "\(rank[i])" : nil, "rank of \(i)")
        }
        let single = try db.query("SELECT score FROM all_scores WHERE method = 'integrated_gradients' AND module = 'key' AND row = 3 AND col = 5").rows
        XCTAssertEqual(single.map { Double($0[0]!) }, [Double(scores[3 * 7 + 5])])
        XCTAssertEqual(try db.query("SELECT COUNT(*), MIN(rank), MAX(rank) FROM neuron_scores").rows, [["20", "1", "20"]])
        XCTAssertEqual(try db.ranks(id), rank.map(Int.init))
    }

    /// The random baseline stores only its ranked rows; when those do not cover the set its
    /// scores are not readable (the producer regenerates them) and the error says so.
    func testRandomSetsKeepOnlyRankedRows() throws {
        let db = try open(rankedRows: 4)
        let layout = ScoreSetLayout(modules: ["query"], layers: 1, blocks: [.init(layer: 0, module: "query", rows: 2, cols: 3, offset: 0)])
        let values: [Float] = [0.1, 0.6, 0.3, 0.9, 0.2, 0.5]
        try db.commitSelections(randomScores: [ScoreSet(id: RankingID(method: "random", seed: 1), layout: layout, values: values, storesScores: false)],
                                selections: [], densities: [], ledger: StageRecord(stage: "select", contentKey: "s", rowsWritten: 0, seconds: 0))
        XCTAssertEqual(try db.query("SELECT COUNT(*) FROM score_rows").rows, [["0"]])
        XCTAssertEqual(try db.query("SELECT row, col, rank FROM neuron_scores ORDER BY rank").rows,
                       [["1", "0", "1"], ["0", "1", "2"], ["1", "2", "3"], ["0", "2", "4"]])
        XCTAssertThrowsError(try db.scores(RankingID(method: "random", seed: 1))) { XCTAssertTrue("\($0)".contains("regenerated"), "\($0)") }
    }

    /// A non-finite score is refused with the set and index, and nothing is written.
    func testNonFiniteScoresAreRefused() throws {
        let db = try open()
        let layout = ScoreSetLayout(modules: ["query"], layers: 1, blocks: [.init(layer: 0, module: "query", rows: 1, cols: 3, offset: 0)])
        XCTAssertThrowsError(try db.commitScores([ScoreSet(id: RankingID(method: "activation"), layout: layout, values: [1, .nan, 2])],
                                                 ledger: StageRecord(stage: "attribute", contentKey: "k", rowsWritten: 0, seconds: 0))) {
            XCTAssertTrue("\($0)".contains("canonical index 1"), "\($0)")
        }
        XCTAssertEqual(try db.query("SELECT COUNT(*) FROM score_sets").rows, [["0"]])
        XCTAssertNil(try db.stage("attribute"))
    }

    /// Shards committed in any order (as array tasks do), with per-class groups that appear
    /// late and chunks of 3 values, give a running total bit-identical to adding the shards in
    /// shard order from zeros (computed here independently); only the shards finished ahead of
    /// the total are stored meanwhile, and writing the scores frees every sum.
    func testShardsFoldInShardOrderWhateverTheCommitOrder() throws {
        let width = 5, classes = 3
        // Shard k: class counts and one group of sums per class present, values that do not
        // add associatively in float64.
        func shard(_ k: Int) -> ShardRecord {
            let counts = [k % 2 == 0 ? 1 : 0, 1, k == 3 ? 2 : 0]
            var sums: [Double] = []
            for g in 0 ..< classes where counts[g] > 0 {
                sums += (0 ..< width).map { i in Double(i + 1) * pow(10, Double((k * 7 + g * 3 + i) % 17 - 8)) * (i % 2 == 0 ? 1 : -1) + 0.1 * Double(k) }
            }
            return ShardRecord(method: "integrated_gradients", shardIndex: k, nSequences: counts.reduce(0, +), classCounts: counts,
                               sums: sums, seconds: 1, contentKey: "key")
        }
        var expected = [[Double]](repeating: [Double](repeating: 0, count: width), count: classes)
        var expectedCounts = [0, 0, 0]
        for k in 0 ..< 5 {
            let s = shard(k)
            var at = 0
            for g in 0 ..< classes where s.classCounts![g] > 0 {
                for i in 0 ..< width { expected[g][i] += s.sums[at * width + i] }
                at += 1
                expectedCounts[g] += s.classCounts![g]
            }
        }
        for order in [[0, 1, 2, 3, 4], [3, 1, 4, 0, 2], [4, 3, 2, 1, 0]] {
            try? FileManager.default.removeItem(at: dir)
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            let db = try open(chunkValues: 3)
            for (n, k) in order.enumerated() {
                XCTAssertTrue(try db.commitShard(shard(k), completeness: []))
                // Stored apart: exactly the committed shards that are not yet reachable in order.
                let committed = Set(order.prefix(n + 1))
                var folded = 0
                while committed.contains(folded) { folded += 1 }
                let apart = committed.filter { $0 >= folded }.sorted()
                XCTAssertEqual(try db.query("SELECT DISTINCT shard_index FROM shard_sums WHERE shard_index >= 0 ORDER BY 1").rows.map { Int($0[0]!)! }, apart, "order \(order) after \(n + 1)")
            }
            let total = try XCTUnwrap(try db.shardTotal(method: "integrated_gradients", granularity: "weight", contentKey: "key"))
            XCTAssertEqual(total.nFolded, 5)
            XCTAssertEqual(total.counts, expectedCounts)
            XCTAssertEqual(total.sums.map(\.bitPattern), expected.flatMap { $0 }.map(\.bitPattern), "order \(order)")
            XCTAssertGreaterThan(try db.query("SELECT COUNT(*) FROM shard_sums WHERE shard_index = -1").rows[0][0].flatMap { Int($0) } ?? 0, 1, "chunked")
            let layout = ScoreSetLayout(modules: ["query"], layers: 1, blocks: [.init(layer: 0, module: "query", rows: 1, cols: 1, offset: 0)])
            try db.commitScores([ScoreSet(id: RankingID(method: "integrated_gradients"), layout: layout, values: [1])],
                                ledger: StageRecord(stage: "attribute", contentKey: "a", rowsWritten: 0, seconds: 0))
            XCTAssertEqual(try db.query("SELECT (SELECT COUNT(*) FROM shard_sums), (SELECT COUNT(*) FROM shard_totals), (SELECT COUNT(*) FROM shards)").rows,
                           [["0", "0", "5"]], "sums freed, done marks kept")
        }
    }

    /// Without per_class groups (the chunk-by-chunk fold): 6 shards of 10 values in chunks of 4
    /// (the last chunk short), committed in several orders, give exactly the in-order sum from
    /// zeros, chunked like any shard.
    func testOneGroupShardsFoldChunkByChunkBitIdentically() throws {
        let width = 10
        func sums(_ k: Int) -> [Double] { (0 ..< width).map { i in (i % 3 == 0 ? -1 : 1) * pow(10, Double((k * 5 + i * 3) % 19 - 9)) + Double(k) / 3 } }
        var expected = [Double](repeating: 0, count: width)
        for k in 0 ..< 6 { for i in 0 ..< width { expected[i] += sums(k)[i] } }
        for order in [[0, 1, 2, 3, 4, 5], [5, 4, 3, 2, 1, 0], [2, 0, 5, 1, 4, 3]] {
            try? FileManager.default.removeItem(at: dir)
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            let db = try open(chunkValues: 4)
            for k in order {
                try db.commitShard(ShardRecord(method: "activation", shardIndex: k, nSequences: k + 1, sums: sums(k), seconds: 1, contentKey: "key"), completeness: [])
            }
            XCTAssertEqual(try db.query("SELECT chunk_index, length(sums) FROM shard_sums ORDER BY shard_index, chunk_index").rows,
                           [["0", "32"], ["1", "32"], ["2", "16"]], "only the running total, in 3 chunks")
            let total = try XCTUnwrap(try db.shardTotal(method: "activation", granularity: "weight", contentKey: "key"))
            XCTAssertEqual(total.nFolded, 6)
            XCTAssertEqual(total.counts, [21])
            XCTAssertEqual(total.sums.map(\.bitPattern), expected.map(\.bitPattern), "order \(order)")
        }
    }

    /// Shards of another content key are deleted with their stored sums and running total.
    func testStaleShardSumsGoWithTheirShards() throws {
        let db = try open()
        try db.commitShard(ShardRecord(method: "activation", shardIndex: 0, nSequences: 1, sums: [1, 2], seconds: 1, contentKey: "old"), completeness: [])
        try db.commitShard(ShardRecord(method: "activation", shardIndex: 2, nSequences: 1, sums: [3, 4], seconds: 1, contentKey: "old"), completeness: [])
        XCTAssertEqual(try db.query("SELECT shard_index FROM shard_sums ORDER BY 1").rows, [["-1"], ["2"]])
        try db.commitShard(ShardRecord(method: "activation", shardIndex: 1, nSequences: 1, sums: [5, 6], seconds: 1, contentKey: "new"), completeness: [])
        XCTAssertEqual(try db.query("SELECT shard_index FROM shard_sums ORDER BY 1").rows, [["1"]], "new shard 1 waits for its shard 0")
        XCTAssertEqual(try db.query("SELECT COUNT(*) FROM shard_totals").rows, [["0"]])
        try db.commitShard(ShardRecord(method: "activation", shardIndex: 0, nSequences: 1, sums: [0.5, 0.25], seconds: 1, contentKey: "new"), completeness: [])
        XCTAssertEqual(try db.shardTotal(method: "activation", granularity: "weight", contentKey: "new"), ShardTotal(nFolded: 2, counts: [2], sums: [5.5, 6.25]))
    }

    /// Damage found by the breaker: a NaN or a truncated row in score_rows is refused on read
    /// with the remedy (and all_scores gives NULL for a truncated row, not zeros); a running total
    /// whose n_folded was raised is refused; a shard recomputed after its done mark was lost
    /// adds nothing twice.
    func testDamagedScoreRowsAndRunningTotalsAreRefusedWithTheRemedy() throws {
        let db = try open()
        let layout = ScoreSetLayout(modules: ["query"], layers: 1, blocks: [.init(layer: 0, module: "query", rows: 2, cols: 3, offset: 0)])
        let id = RankingID(method: "activation")
        try db.commitScores([ScoreSet(id: id, layout: layout, values: [1, 2, 3, 4, 5, 6])], ledger: StageRecord(stage: "attribute", contentKey: "k", rowsWritten: 0, seconds: 0))
        let raw = try DatabaseQueue(path: dir.appendingPathComponent("run.sqlite").path)
        try raw.write { try $0.execute(sql: "UPDATE score_rows SET scores = x'0000C07F0000004000004040' WHERE row = 0") }   // NaN, 2, 3
        XCTAssertThrowsError(try db.scores(id)) { XCTAssertTrue("\($0)".contains("non-finite") && "\($0)".contains("--force attribute"), "\($0)") }
        XCTAssertEqual(try db.query("SELECT score FROM all_scores WHERE row = 0 ORDER BY col").rows, [[nil], ["2.0"], ["3.0"]], "NaN decodes to NULL")
        try raw.write { try $0.execute(sql: "UPDATE score_rows SET scores = x'0000803F00000040' WHERE row = 0") }   // 2 of 3 values
        XCTAssertThrowsError(try db.scores(id)) { XCTAssertTrue("\($0)".contains("does not match the block's layout") && "\($0)".contains("--force attribute"), "\($0)") }
        XCTAssertEqual(try db.query("SELECT score FROM all_scores WHERE row = 0 ORDER BY col").rows, [[nil], [nil], [nil]], "a truncated row decodes to NULL, not zeros")

        for k in [0, 1, 3] {
            try db.commitShard(ShardRecord(method: "activation", shardIndex: k, nSequences: 1, sums: [Double(k)], seconds: 1, contentKey: "s"), completeness: [])
        }
        // Lost done mark of shard 0, recomputed: already in the total, nothing is added twice.
        try raw.write { try $0.execute(sql: "DELETE FROM shards WHERE shard_index = 0") }
        try db.commitShard(ShardRecord(method: "activation", shardIndex: 0, nSequences: 1, sums: [0], seconds: 1, contentKey: "s"), completeness: [])
        XCTAssertEqual(try db.query("SELECT shard_index FROM shard_sums ORDER BY 1").rows, [["-1"], ["3"]])
        try raw.write { try $0.execute(sql: "UPDATE shard_totals SET n_folded = 4") }   // claims shards 2 and 3
        XCTAssertThrowsError(try db.commitShard(ShardRecord(method: "activation", shardIndex: 2, nSequences: 1, sums: [2], seconds: 1, contentKey: "s"), completeness: [])) {
            XCTAssertTrue("\($0)".contains("claims shards 0 ..< 4") && "\($0)".contains("--force attribute"), "\($0)")
        }
    }

    /// A 0006 database with a score set missing a row still migrates (the damaged set is left
    /// unpacked and says what to do when read); the others are packed.
    func testMigrationCompletesPastADamagedSet() throws {
        let path = dir.appendingPathComponent("old.sqlite").path
        do {
            let queue = try DatabaseQueue(path: path)
            var migrator = DatabaseMigrator()
            for m in try RunDatabase.migrationFiles() where m.name < "0007" { migrator.registerMigration(m.name) { try $0.execute(sql: m.sql) } }
            try migrator.migrate(queue)
            try queue.write { db in
                try db.execute(sql: "INSERT INTO score_sets (set_id, method, granularity, target_class, seed, modules, n_layers, n_scores) VALUES (1, 'activation', 'weight', -1, 0, 'query', 1, 4), (2, 'integrated_gradients', 'weight', -1, 0, 'query', 1, 4)")
                try db.execute(sql: "INSERT INTO score_blocks VALUES (1, 0, 0, 'query', 2, 2, 0), (2, 0, 0, 'query', 2, 2, 0)")
                for i in 0 ..< 4 { try db.execute(sql: "INSERT INTO score_values VALUES (?, ?, ?)", arguments: [4294967296 + i, Double(i), 4 - i]) }
                for i in 0 ..< 3 { try db.execute(sql: "INSERT INTO score_values VALUES (?, ?, ?)", arguments: [2 * 4294967296 + i, Double(i), 4 - i]) }
            }
        }
        let db = try RunDatabase(path: path)
        XCTAssertEqual(try db.pendingMigrations(), [])
        XCTAssertEqual(try db.scores(RankingID(method: "activation")), [0, 1, 2, 3])
        XCTAssertThrowsError(try db.scores(RankingID(method: "integrated_gradients"))) { XCTAssertTrue("\($0)".contains("--force attribute"), "\($0)") }
    }

    /// neuron_across_methods' random_rank_mean is the mean over every random seed, or NULL when a
    /// seed keeps no ranked row for the element (a mean of the ranked rows alone would be biased).
    func testRandomRankMeanNeedsEverySeed() throws {
        let db = try open(rankedRows: 3)
        let layout = ScoreSetLayout(modules: ["query"], layers: 1, blocks: [.init(layer: 0, module: "query", rows: 1, cols: 4, offset: 0)])
        try db.commitScores([ScoreSet(id: RankingID(method: "activation"), layout: layout, values: [4, 3, 2, 1])],
                            ledger: StageRecord(stage: "attribute", contentKey: "k", rowsWritten: 0, seconds: 0))
        try db.commitSelections(randomScores: [ScoreSet(id: RankingID(method: "random", seed: 1), layout: layout, values: [0.9, 0.8, 0.7, 0.1], storesScores: false),
                                               ScoreSet(id: RankingID(method: "random", seed: 2), layout: layout, values: [0.1, 0.9, 0.8, 0.7], storesScores: false)],
                                selections: [], densities: [], ledger: StageRecord(stage: "select", contentKey: "s", rowsWritten: 0, seconds: 0))
        // col 1: ranks 2 and 1 -> 1.5; col 0: ranks 1 and 4 (no row for seed 2 at rank 4) -> NULL.
        XCTAssertEqual(try db.query("SELECT col, score, rank, random_rank_mean FROM neuron_across_methods ORDER BY col").rows,
                       [["0", "4.0", "1", nil], ["1", "3.0", "2", "1.5"], ["2", "2.0", "3", "2.5"], ["3", "1.0", nil, nil]])
    }
}
