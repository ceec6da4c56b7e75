import Foundation
import XCTest
@testable import Pipeline
import Store
import ESM
import ProteinData

/// The whole pipeline on a slice of the real data (sample-test-280: 280 Swiss-Prot
/// enzymes, 40 per EC class) with the `tiny` model: tables, a second run that does
/// nothing, and a run killed (SIGKILL) during attribution and resumed.
final class EndToEndTests: XCTestCase {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The real data directory (`swissprot-ec`): `KNEURON_DATA`, `data/` (after
    /// `data/fetch.sh`), or `../shared/data`.
    static func dataDirectory() -> URL? {
        var candidates: [URL] = []
        if let env = ProcessInfo.processInfo.environment["KNEURON_DATA"] { candidates.append(URL(fileURLWithPath: env)) }
        candidates.append(packageRoot.appendingPathComponent("data"))
        candidates.append(packageRoot.deletingLastPathComponent().appendingPathComponent("shared/data"))
        return candidates.map { $0.appendingPathComponent("swissprot-ec") }
            .first { FileManager.default.fileExists(atPath: $0.appendingPathComponent("sample-test-280.fasta").path) }
    }

    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("kneuron-e2e-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func writeSpec() throws -> String {
        guard let data = Self.dataDirectory() else { throw XCTSkip("real data not found: run data/fetch.sh --from ../shared/data or set KNEURON_DATA") }
        let spec = """
        name: e2e
        inputs:
          fasta: [\(data.appendingPathComponent("sample-test-280.fasta").path)]
          labels: [\(data.appendingPathComponent("sample-test-280.ec.tsv").path)]
        split: {train: 0.6, select: 0.2, test: 0.2, seed: 3}
        model: {preset: tiny, pooling: mean, max_length: 40, crop: head, seed: 5}
        train: {epochs: 2, batch_size: 16, learning_rate: 0.002, seed: 1}
        attribution: {steps: 4, shard_size: 3, max_sequences: 24}
        selection: {retention_fractions: [0.5, 0.1], random_seeds: [1, 2, 3]}
        evidence: {fractions: [0.1, 0.5], random_rankings: 4, bootstrap_resamples: 200}
        cards: {shard_size: 16}
        """
        let path = dir.appendingPathComponent("e2e.yaml").path
        try spec.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func runInProcess(spec: String, db: String) throws -> [StageOutcome] {
        let database = try RunDatabase(path: db)
        let ctx = try RunContext(spec: try PipelineSpec.load(path: spec), specPath: spec, db: database, quiet: true)
        return try PipelineRunner(context: ctx).run(Stage.allCases)
    }

    func count(_ db: RunDatabase, _ sql: String) throws -> Int { Int(try db.query(sql).rows[0][0]!)! }

    func testWholePipelineThenNothingToDo() throws {
        let spec = try writeSpec()
        let dbPath = dir.appendingPathComponent("e2e.sqlite").path
        let first = try runInProcess(spec: spec, db: dbPath)
        XCTAssertEqual(first.map(\.ran), Array(repeating: true, count: Stage.allCases.count))
        let db = try RunDatabase(path: dbPath, readOnly: true)
        XCTAssertEqual(try count(db, "SELECT COUNT(*) FROM sequences"), 280)
        XCTAssertEqual(try count(db, "SELECT COUNT(*) FROM rejected_records"), 0)
        XCTAssertEqual(try count(db, "SELECT COUNT(*) FROM classes"), 7)
        XCTAssertEqual(try db.query("SELECT name FROM classes WHERE ec_label = '3.-.-.-'").rows, [["Hydrolases"]])
        XCTAssertEqual(try count(db, "SELECT COUNT(*) FROM input_files"), 2)
        // Stratified 60/20/20 of 40 per class: 24/8/8 per class.
        XCTAssertEqual(try db.query("SELECT split, COUNT(*) FROM splits GROUP BY split ORDER BY split").rows,
                       [["select", "56"], ["test", "56"], ["train", "168"]])
        // Cropping keeps <cls> and <eos>: 40 tokens = 38 residues.
        XCTAssertEqual(try count(db, "SELECT MAX(n_tokens) FROM tokens"), 40)
        XCTAssertEqual(try count(db, "SELECT COUNT(*) FROM tokens WHERE cropped = 1 AND residue_end - residue_start != 38"), 0)
        XCTAssertEqual(try count(db, "SELECT COUNT(*) FROM training_epochs"), 2)
        XCTAssertEqual(try count(db, "SELECT COUNT(*) FROM checkpoints WHERE name = 'final' AND length(sha256) = 64"), 1)
        // tiny: 2 layers x 3 matrices x 32 x 32 = 6144 weights per method and seed.
        XCTAssertEqual(try db.query("SELECT method, COUNT(*) FROM neuron_scores GROUP BY method ORDER BY method").rows,
                       [["activation", "6144"], ["integrated_gradients", "6144"], ["random", "18432"]])
        XCTAssertEqual(try count(db, "SELECT COUNT(*) FROM shards"), 16)  // 24 sequences / 3, two methods
        XCTAssertEqual(try count(db, "SELECT COUNT(*) FROM ig_completeness"), 24)
        XCTAssertEqual(try count(db, "SELECT COUNT(*) FROM selections"), 10)
        XCTAssertEqual(try count(db, "SELECT n_kept FROM selections WHERE method = 'activation' AND retention_fraction = 0.1"), 614)
        XCTAssertEqual(try count(db, "SELECT COUNT(*) FROM selection_members WHERE method = 'random' AND seed = 2 AND retention_fraction = 0.5"), 3072)
        XCTAssertEqual(try count(db, "SELECT SUM(n_kept) FROM selection_density WHERE method = 'integrated_gradients' AND retention_fraction = 0.5"), 3072)
        XCTAssertEqual(try count(db, "SELECT COUNT(*) FROM evaluations"), 11)
        XCTAssertEqual(try count(db, "SELECT n_test FROM evaluations WHERE method = 'full'"), 56)
        XCTAssertEqual(try count(db, "SELECT COUNT(*) FROM evaluation_classes WHERE method = 'full'"), 7)
        // full + {activation, integrated_gradients, random} x {0.5, 0.1}; random has 3 seeds.
        XCTAssertEqual(try count(db, "SELECT COUNT(*) FROM accuracy_table"), 7)
        XCTAssertEqual(try count(db, "SELECT n_seeds FROM accuracy_table WHERE method = 'random' AND retention_fraction = 0.5"), 3)
        // Activation scores are |w| * mean|x| >= 0; the ig completeness identity holds per row.
        XCTAssertEqual(try count(db, "SELECT COUNT(*) FROM neuron_scores WHERE method = 'activation' AND score < 0"), 0)
        XCTAssertEqual(try count(db, "SELECT COUNT(*) FROM ig_completeness WHERE abs(gap - (attribution_sum - (p_full - p_baseline))) > 1e-9"), 0)
        let report = try String(contentsOfFile: dir.appendingPathComponent("e2e.artifacts/report.md").path, encoding: .utf8)
        XCTAssertTrue(report.contains("| integrated gradients |"), report)
        XCTAssertTrue(report.contains("| 100% | 50% | 10% |"), report)
        // Stratified split: 8 test sequences of each of the 7 classes.
        XCTAssertTrue(report.contains("7 classes, chance 0.1429, majority-class baseline 0.1429 (8/56)."), report)
        XCTAssertTrue(report.contains("Data: 280 sequences (train 168, select 56, test 56); 0 records rejected (reasons in `rejected_records`)."), report)

        // Cards on cropped sequences (max_length 40, crop head): the window's residues the model did not see are
        // lower case, exactly those; the peak is inside the crop.
        let tokens = try db.tokens()
        var croppedWindows = 0
        for row in try db.query("SELECT sequence_id, peak_position, window, window_start FROM neuron_examples").rows {
            let t = tokens[row[0]!]!, peak = Int(row[1]!)!, start = Int(row[3]!)!
            XCTAssertTrue(peak - 1 >= t.residueStart && peak - 1 < t.residueEnd, "the peak is a residue the model saw")
            for (i, ch) in row[2]!.enumerated() {
                let seen = start - 1 + i >= t.residueStart && start - 1 + i < t.residueEnd
                XCTAssertEqual(ch.isLowercase, !seen, "\(row)")
                if !seen { croppedWindows += 1 }
            }
        }
        XCTAssertGreaterThan(croppedWindows, 0)
        XCTAssertEqual(try count(db, "SELECT COUNT(*) FROM (SELECT 1 FROM neuron_positions p JOIN neuron_profiles f USING (layer, module, unit) GROUP BY layer, module, unit HAVING SUM(p.count) != MAX(f.n_top))"), 0, "bins sum to n_top")
        let second = try runInProcess(spec: spec, db: dbPath)
        XCTAssertEqual(second.map(\.ran), Array(repeating: false, count: Stage.allCases.count), "a second run does nothing")
        XCTAssertEqual(try count(db, "SELECT COUNT(*) FROM neuron_scores"), 30720)
    }

    /// The built `kneuron` executable next to the test bundle.
    static func executable() -> String? {
        let bundleDir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for candidate in [bundleDir, Bundle.main.bundleURL.deletingLastPathComponent(), Bundle.main.bundleURL] {
            let p = candidate.appendingPathComponent("kneuron").path
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        return nil
    }

    /// Runs `kneuron run SPEC --db DB` as a child process, slowed per shard, and kills it with
    /// SIGKILL once at least 3 attribution shards are committed. Returns the shards at the kill.
    func killDuringAttribution(spec: String, db killed: String) throws -> Int {
        guard let exe = Self.executable() else { throw XCTSkip("kneuron executable not found next to the test bundle") }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = ["run", spec, "--db", killed, "--quiet"]
        p.environment = ProcessInfo.processInfo.environment.merging(["KNEURON_DEBUG_SHARD_DELAY_MS": "150"]) { $1 }
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        var shardsAtKill = 0
        let deadline = Date().addingTimeInterval(300)
        while Date() < deadline {
            usleep(20_000)
            if FileManager.default.fileExists(atPath: killed),
               let db = try? RunDatabase(path: killed, readOnly: true),
               let n = try? count(db, "SELECT COUNT(*) FROM shards"), n >= 3 {
                shardsAtKill = n
                break
            }
            if !p.isRunning { break }
        }
        XCTAssertTrue(p.isRunning, "the run finished before it could be killed")
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        XCTAssertGreaterThanOrEqual(shardsAtKill, 3)
        let partial = try RunDatabase(path: killed, readOnly: true)
        XCTAssertNil(try partial.stage("attribute"), "killed during attribution")
        XCTAssertLessThan(try count(partial, "SELECT COUNT(*) FROM shards"), 16)
        return shardsAtKill
    }

    func testKilledDuringAttributionResumesToIdenticalScores() throws {
        let spec = try writeSpec()
        let reference = dir.appendingPathComponent("reference.sqlite").path
        _ = try runInProcess(spec: spec, db: reference)
        let killed = dir.appendingPathComponent("killed.sqlite").path
        _ = try killDuringAttribution(spec: spec, db: killed)
        // status: 8 planned shards per method (24 sequences / 3), the committed ones done.
        let partial = try RunDatabase(path: killed, readOnly: true)
        let shardsAtKill = try count(partial, "SELECT COUNT(*) FROM shards")
        let during = try RunStatus.read(db: partial)
        XCTAssertFalse(during.complete)
        XCTAssertEqual(during.lines.map(\.done), [true, true, true, true, false, false, false, false, false, false, false, false])
        XCTAssertEqual(during.shards.count, 16)
        XCTAssertEqual(during.shards.filter(\.done).count, shardsAtKill)
        XCTAssertEqual(Set(during.shards.map(\.sequences)), [3])
        XCTAssertTrue(during.lines[4].detail.hasPrefix("activation/weight: \(min(shardsAtKill, 8)) of 8 shards done ("), during.lines[4].detail)
        XCTAssertEqual(during.shardText.split(separator: "\n").count, 17)

        let resumed = try runInProcess(spec: spec, db: killed)
        XCTAssertEqual(resumed.prefix(4).map(\.ran), [false, false, false, false], "ingest..train are not redone")
        XCTAssertTrue(resumed[4].ran)
        let a = try RunDatabase(path: reference, readOnly: true), b = try RunDatabase(path: killed, readOnly: true)
        for method in ["activation", "integrated_gradients"] {
            XCTAssertEqual(try a.scores(method: method), try b.scores(method: method), method)
        }
        XCTAssertEqual(try count(b, "SELECT COUNT(*) FROM shards"), 16)
        XCTAssertEqual(try count(b, "SELECT COUNT(*) FROM ig_completeness"), 24)
        let after = try RunStatus.read(db: b)
        XCTAssertTrue(after.complete)
        XCTAssertEqual(after.shards.filter(\.done).count, 16)
        XCTAssertEqual(try a.evaluations(), try b.evaluations())
        XCTAssertEqual(try b.query("PRAGMA integrity_check").rows, [["ok"]])
    }

    /// Shards finished under other attribution parameters are discarded, not mixed in: kill
    /// during attribution, change `steps` and `shard_size`, resume, and compare with a clean
    /// run of the changed spec.
    func testChangedAttributionParametersDiscardFinishedShards() throws {
        let spec = try writeSpec()
        let killed = dir.appendingPathComponent("changed.sqlite").path
        _ = try killDuringAttribution(spec: spec, db: killed)
        let text = try String(contentsOfFile: spec, encoding: .utf8)
            .replacingOccurrences(of: "attribution: {steps: 4, shard_size: 3,", with: "attribution: {steps: 6, shard_size: 4,")
        XCTAssertTrue(text.contains("steps: 6"))
        try text.write(toFile: spec, atomically: true, encoding: .utf8)
        let resumed = try runInProcess(spec: spec, db: killed)
        XCTAssertTrue(resumed[4].ran)
        let clean = dir.appendingPathComponent("clean.sqlite").path
        _ = try runInProcess(spec: spec, db: clean)
        let a = try RunDatabase(path: clean, readOnly: true), b = try RunDatabase(path: killed, readOnly: true)
        for method in ["activation", "integrated_gradients"] {
            XCTAssertEqual(try a.scores(method: method), try b.scores(method: method), method)
        }
        XCTAssertEqual(try count(b, "SELECT COUNT(*) FROM shards"), 12)   // 24 sequences / 4, two methods
        XCTAssertEqual(try count(b, "SELECT SUM(n_sequences) FROM shards WHERE method = 'activation'"), 24)
        XCTAssertEqual(try count(b, "SELECT COUNT(*) FROM ig_completeness"), 24)
    }

    /// Array-job sharding: 4 tasks run by 2 concurrent processes (tasks 0 then 2, and 1 then 3)
    /// on one database give exactly the scores of a single process doing every shard.
    func testFourTasksOnTwoConcurrentProcessesEqualOneProcess() throws {
        let spec = try writeSpec()
        guard let exe = Self.executable() else { throw XCTSkip("kneuron executable not found next to the test bundle") }
        let reference = dir.appendingPathComponent("one.sqlite").path
        _ = try runInProcess(spec: spec, db: reference)

        let sharded = dir.appendingPathComponent("tasks.sqlite").path
        let database = try RunDatabase(path: sharded)
        let ctx = try RunContext(spec: try PipelineSpec.load(path: spec), specPath: spec, db: database, quiet: true)
        _ = try PipelineRunner(context: ctx).run([.ingest, .tokenize, .split, .train])

        func attribute(_ task: Int) -> String {
            "'\(exe)' attribute '\(spec)' --db '\(sharded)' --quiet --shard-index \(task) --num-shards 4"
        }
        var processes: [Process] = []
        var outputs: [Pipe] = []
        for tasks in [[0, 2], [1, 3]] {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/bin/sh")
            p.arguments = ["-c", tasks.map(attribute).joined(separator: " && ")]
            // Partial sums in chunks of 1,000 values (the reference keeps one chunk per shard) and
            // ranked rows for the best 500 ranks only: neither changes a score.
            p.environment = ProcessInfo.processInfo.environment.merging(["KNEURON_DEBUG_SHARD_DELAY_MS": "20", "KNEURON_DEBUG_CHUNK_VALUES": "1000",
                                                                         "KNEURON_DEBUG_RANKED_ROWS": "500"]) { $1 }
            let out = Pipe()
            p.standardOutput = out
            p.standardError = out
            try p.run()
            processes.append(p)
            outputs.append(out)
        }
        for p in processes { p.waitUntilExit() }
        let printed = outputs.map { String(decoding: $0.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self) }.joined()
        XCTAssertEqual(processes.map(\.terminationStatus), [0, 0], printed)
        XCTAssertTrue(printed.contains("this task's shards are done"), "a task that finished before the others says so: \(printed)")

        let a = try RunDatabase(path: reference, readOnly: true), b = try RunDatabase(path: sharded, readOnly: true)
        XCTAssertNotNil(try b.stage("attribute"), "the last task combined the scores")
        for method in ["activation", "integrated_gradients"] {
            XCTAssertEqual(try a.scores(method: method), try b.scores(method: method), method)
        }
        XCTAssertEqual(try count(b, "SELECT COUNT(*) FROM shards"), 16)
        XCTAssertEqual(try count(b, "SELECT COUNT(*) FROM shard_sums"), 0, "the partial sums are freed once the scores are written")
        XCTAssertEqual(try count(b, "SELECT COUNT(*) FROM ig_completeness"), 24)
        let weights = try count(a, "SELECT n_scores FROM score_sets WHERE method = 'activation'")
        XCTAssertGreaterThan(weights, 500)
        XCTAssertEqual(try count(a, "SELECT COUNT(*) FROM neuron_scores WHERE method = 'activation'"), weights)
        XCTAssertEqual(try a.query("SELECT layer, module, row, col, score, rank FROM neuron_scores WHERE rank <= 500 AND method != 'random' ORDER BY method, rank").rows,
                       try b.query("SELECT layer, module, row, col, score, rank FROM neuron_scores ORDER BY method, rank").rows,
                       "the sharded run's ranked rows are the reference's best 500 of each set")
        let after = try RunStatus.read(db: b)
        XCTAssertEqual(after.lines.map(\.done), [true, true, true, true, true, false, false, false, false, false, false, false])
        XCTAssertEqual(after.shards.filter(\.done).count, 16)
        XCTAssertEqual(try b.query("PRAGMA integrity_check").rows, [["ok"]])
        // The rest of the pipeline continues from the combined scores.
        let rest = try runInProcess(spec: spec, db: sharded)
        XCTAssertEqual(rest.map(\.ran), [false, false, false, false, false, true, true, true, true, true, true, true])
        XCTAssertEqual(try a.evaluations(), try RunDatabase(path: sharded, readOnly: true).evaluations())
    }

    func testShardSelectionValidates() {
        XCTAssertThrowsError(try ShardSelection(index: 2, count: 2))
        XCTAssertThrowsError(try ShardSelection(index: 0, count: 0))
        let s = try? ShardSelection(index: 1, count: 3)
        XCTAssertEqual((0 ..< 7).filter { s?.owns($0) ?? false }, [1, 4])
    }

    /// A refused run names what changed: a parameter of the stage, or an earlier stage's input.
    func testChangedSpecIsRefusedNamingTheChange() throws {
        let spec = try writeSpec()
        let db = dir.appendingPathComponent("changed-spec.sqlite").path
        _ = try runInProcess(spec: spec, db: db)
        let text = try String(contentsOfFile: spec, encoding: .utf8)
        try text.replacingOccurrences(of: "train: {epochs: 2,", with: "train: {epochs: 3,").write(toFile: spec, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try runInProcess(spec: spec, db: db)) { e in
            XCTAssertEqual("\(e)", "stage train was recorded with other inputs or parameters: train.epochs: 2 -> 3. "
                           + "Use `--force train` to redo it and the stages after it, or a new --db.")
        }
        try text.replacingOccurrences(of: "seed: 3}", with: "seed: 4}").write(toFile: spec, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try runInProcess(spec: spec, db: db)) { e in
            XCTAssertTrue("\(e)".hasPrefix("stage split was recorded with other inputs or parameters: split.seed: 3 -> 4."), "\(e)")
        }
        let database = try RunDatabase(path: db, readOnly: true)
        XCTAssertTrue(try database.stage("train")!.parameters.contains("train.epochs\t2"))
    }

    /// `kneuron predict` on the run's own checkpoint, with the run's tokenization, reproduces
    /// the evaluate stage's test accuracy; the TSV has the documented header and probabilities
    /// that sum to 1; an unusable record is reported, not dropped silently.
    func testPredictReproducesTheTestAccuracy() throws {
        let spec = try writeSpec()
        let dbPath = dir.appendingPathComponent("predict.sqlite").path
        _ = try runInProcess(spec: spec, db: dbPath)
        let data = Self.dataDirectory()!
        let extra = dir.appendingPathComponent("extra.fasta").path
        try ">BAD1 has a J\nMKJV\n".write(toFile: extra, atomically: true, encoding: .utf8)
        let out = dir.appendingPathComponent("pred.tsv").path
        let summary = try Predictor.run(model: dir.appendingPathComponent("predict.artifacts/final").path,
                                        fasta: [data.appendingPathComponent("sample-test-280.fasta").path, extra],
                                        output: out, maxLength: 40, crop: .head)
        XCTAssertEqual(summary.predicted, 280)
        XCTAssertEqual(summary.rejected.map(\.id), ["BAD1"])
        XCTAssertEqual(summary.crops.count, 280, "every sample sequence is longer than 38 residues")
        // Reported as a count, the first five with file and header line, and the rest counted.
        let fastaPath = data.appendingPathComponent("sample-test-280.fasta").path
        let report = CroppedSequence.report(summary.crops, total: summary.predicted, maxLength: summary.maxLength)
        XCTAssertEqual(report.count, 7)
        XCTAssertEqual(report[0], "cropped: 280 of 280 sequences are longer than 38 residues (--max-length 40 tokens with <cls> and <eos>) and were cropped, policy head")
        XCTAssertTrue(report[1].hasPrefix("cropped: \(fastaPath):1 "), report[1])
        XCTAssertTrue(report[1].hasSuffix("cropped to 38 (residues 1-38, policy head)"), report[1])
        XCTAssertEqual(report[6], "cropped: ... and 275 more")
        XCTAssertThrowsError(try Predictor.run(model: dir.appendingPathComponent("predict.artifacts/final").path, fasta: [extra], output: nil, maxLength: 2000)) { error in
            XCTAssertTrue("\(error)".contains("--max-length 2000 is more than the 1026 positions of the model"), "\(error)")
        }
        let lines = try String(contentsOfFile: out, encoding: .utf8).split(separator: "\n").map { $0.split(separator: "\t", omittingEmptySubsequences: false) }
        let logitNames: [String] = (0 ..< 7).map { "logit_\($0)" }
        let probNames: [String] = (0 ..< 7).map { "prob_\($0)" }
        let header: [String] = ["id"] + logitNames + probNames + ["predicted"]
        XCTAssertEqual(lines[0].map(String.init), header)
        XCTAssertEqual(lines.count, 281)
        var predicted: [String: String] = [:]
        for l in lines.dropFirst() {
            let p: Double = l[8 ..< 15].map { Double($0)! }.reduce(0, +)
            XCTAssertEqual(p, 1, accuracy: 1e-5)
            predicted[String(l[0])] = String(l[15])
        }
        let db = try RunDatabase(path: dbPath, readOnly: true)
        let test = try db.query("SELECT s.sequence_id, q.ec_label FROM splits s JOIN sequences q ON q.id = s.sequence_id WHERE s.split = 'test'").rows
        var correct = 0
        for row in test {
            guard let id = row[0], let ec = row[1], let name = predicted[id] else { continue }
            if name == ec || name.hasPrefix(ec + " ") { correct += 1 }
        }
        XCTAssertEqual(correct, try count(db, "SELECT n_correct FROM evaluations WHERE method = 'full'"))
    }

    /// Runs the `kneuron` executable with extra environment variables; returns its exit code
    /// and stderr.
    func runCLI(_ arguments: [String], environment: [String: String] = [:], prefix: [String] = []) throws -> (status: Int32, stderr: String) {
        guard let exe = Self.executable() else { throw XCTSkip("kneuron executable not found next to the test bundle") }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: prefix.first ?? exe)
        p.arguments = prefix.isEmpty ? arguments : Array(prefix.dropFirst()) + [exe] + arguments
        p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let err = Pipe()
        p.standardOutput = FileHandle.nullDevice
        p.standardError = err
        try p.run()
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        return (p.terminationStatus, text)
    }

    /// A first attempt that fails before any stage is recorded leaves no database behind;
    /// a database with recorded work is never removed by a later failure.
    func testFailedFirstAttemptLeavesNoDatabase() throws {
        let db = dir.appendingPathComponent("new.sqlite").path
        let missing = dir.appendingPathComponent("missing.fasta").path
        let failed = try runCLI(["ingest", "--fasta", missing, "--labels", missing + ".tsv", "--db", db])
        XCTAssertEqual(failed.status, 1)
        XCTAssertTrue(failed.stderr.contains("cannot read input \(missing)"), failed.stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix("new.sqlite") }, [])
        let spec = try writeSpec()
        XCTAssertEqual(try runCLI(["ingest", spec, "--db", db]).status, 0)
        let refused = try runCLI(["ingest", spec, "--db", db, "--force", "train"])
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertNotNil(try RunDatabase(path: db, readOnly: true).stage("ingest"), "recorded work stays")
    }

    /// A full disk during attribution (simulated with SQLite's page limit): the run stops with
    /// a clear message, everything committed before stays, and a rerun with space completes
    /// to the same scores as an uninterrupted run.
    func testDiskFullStopsCleanlyAndTheRerunCompletes() throws {
        let spec = try writeSpec()
        let reference = dir.appendingPathComponent("reference.sqlite").path
        _ = try runInProcess(spec: spec, db: reference)
        let full = dir.appendingPathComponent("full.sqlite").path
        do {
            let database = try RunDatabase(path: full)
            let ctx = try RunContext(spec: try PipelineSpec.load(path: spec), specPath: spec, db: database, quiet: true)
            _ = try PipelineRunner(context: ctx).run([.ingest, .tokenize, .split, .train])
        }
        let pages = try count(try RunDatabase(path: full, readOnly: true), "PRAGMA page_count")
        let before = try RunDatabase(path: full, readOnly: true).query("SELECT epoch, train_loss FROM training_epochs ORDER BY 1").rows
        let failed = try runCLI(["run", spec, "--db", full], environment: ["KNEURON_DEBUG_MAX_PAGES": "\(pages + 4)"])
        XCTAssertEqual(failed.status, 1)
        XCTAssertTrue(failed.stderr.contains("disk full while"), failed.stderr)
        XCTAssertTrue(failed.stderr.contains("Free space on the disk and run the same command again"), failed.stderr)
        XCTAssertFalse(failed.stderr.contains("Usage:"), failed.stderr)
        let partial = try RunDatabase(path: full, readOnly: true)
        XCTAssertNotNil(try partial.stage("train"), "train stays recorded")
        XCTAssertNil(try partial.stage("attribute"))
        XCTAssertEqual(try partial.query("SELECT epoch, train_loss FROM training_epochs ORDER BY 1").rows, before)
        XCTAssertEqual(try partial.query("PRAGMA integrity_check").rows, [["ok"]])
        let rerun = try runCLI(["run", spec, "--db", full, "--quiet"])
        XCTAssertEqual(rerun.status, 0, rerun.stderr)
        let a = try RunDatabase(path: reference, readOnly: true), b = try RunDatabase(path: full, readOnly: true)
        for method in ["activation", "integrated_gradients"] {
            XCTAssertEqual(try a.scores(method: method), try b.scores(method: method), method)
        }
        XCTAssertEqual(try a.evaluations(), try b.evaluations())
    }

    /// A database the user cannot write (file and directory read-only): commands that run
    /// stages refuse with a clear message and change nothing; `status` and `query` still read
    /// it. Root ignores permissions, so as root the command runs as `nobody` via setpriv.
    func testReadOnlyDatabaseIsRefusedClearlyAndStaysReadable() throws {
        let spec = try writeSpec()
        let box = URL(fileURLWithPath: "/tmp").appendingPathComponent("kneuron-ro-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: box, withIntermediateDirectories: true)
        defer { chmod(box.path, 0o755); try? FileManager.default.removeItem(at: box) }
        let db = box.appendingPathComponent("run.sqlite").path
        _ = try runInProcess(spec: spec, db: db)
        let boxSpec = box.appendingPathComponent("e2e.yaml").path
        try FileManager.default.copyItem(atPath: spec, toPath: boxSpec)
        var prefix: [String] = []
        if getuid() == 0 {
            guard FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv") else { throw XCTSkip("running as root without setpriv") }
            prefix = ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
            let probe = try runCLI(["--help"], prefix: prefix)
            if probe.status != 0 { throw XCTSkip("user nobody cannot run the kneuron executable here: \(probe.stderr)") }
        }
        for file in try FileManager.default.contentsOfDirectory(atPath: box.path) { chmod(box.appendingPathComponent(file).path, 0o444) }
        chmod(box.path, 0o555)
        let checksum = { try Data(contentsOf: URL(fileURLWithPath: db)).hashValue }
        let sumBefore = try checksum()
        for args in [["run", boxSpec, "--db", db], ["run", boxSpec, "--db", db, "--force", "report"], ["report", boxSpec, "--db", db]] {
            let r = try runCLI(args, prefix: prefix)
            XCTAssertEqual(r.status, 1, args.joined(separator: " "))
            XCTAssertTrue(r.stderr.contains("database \(db) is read-only (the file is not writable"), r.stderr)
            XCTAssertTrue(r.stderr.contains("Nothing in it was changed"), r.stderr)
        }
        XCTAssertEqual(try checksum(), sumBefore)
        XCTAssertEqual(try runCLI(["status", "--db", db], prefix: prefix).status, 0)
        XCTAssertEqual(try runCLI(["query", "--db", db, "SELECT COUNT(*) FROM neuron_scores"], prefix: prefix).status, 0)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: box.path).filter { $0.hasSuffix("-shm") || $0.hasSuffix("-wal") }, [],
                       "readers leave no -wal/-shm files behind")

        // A database whose -wal still holds committed changes (its writer was killed) cannot be
        // read without creating -shm: refused with the reason, never read without those changes.
        let box2 = URL(fileURLWithPath: "/tmp").appendingPathComponent("kneuron-ro-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: box2, withIntermediateDirectories: true)
        defer { chmod(box2.path, 0o755); try? FileManager.default.removeItem(at: box2) }
        let live = dir.appendingPathComponent("live.sqlite").path
        let writer = try RunDatabase(path: live)
        try writer.commitLedger(StageRecord(stage: "ingest", contentKey: "ingest@1:x", rowsWritten: 0, seconds: 0))
        for suffix in ["", "-wal"] { try FileManager.default.copyItem(atPath: live + suffix, toPath: box2.appendingPathComponent("live.sqlite" + suffix).path) }
        withExtendedLifetime(writer) {}
        chmod(box2.path, 0o555)
        let copied = box2.appendingPathComponent("live.sqlite").path
        let refused = try runCLI(["status", "--db", copied], prefix: prefix)
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.stderr.contains("-wal holds") && refused.stderr.contains("bytes of changes not yet written into the database"), refused.stderr)
    }

    /// Crash harness: `kneuron run` is killed with SIGKILL at random moments (>= 20 kills that
    /// landed while it was running, over ingest ... sanity and cards) and resumed until it completes,
    /// on fresh databases until enough kills accumulated; every table's data must equal an
    /// uninterrupted run's (timings excluded), with no duplicates and integrity_check ok.
    func testCrashHarnessKillsAtRandomPointsAndResumesToIdenticalTables() throws {
        let spec = try writeSpec()
        guard let exe = Self.executable() else { throw XCTSkip("kneuron executable not found next to the test bundle") }
        let text = try String(contentsOfFile: spec, encoding: .utf8)
        try text.replacingOccurrences(of: "train: {epochs: 2,", with: "train: {epochs: 4,").write(toFile: spec, atomically: true, encoding: .utf8)
        let reference = dir.appendingPathComponent("uninterrupted.sqlite").path
        _ = try runInProcess(spec: spec, db: reference)
        let tables: [(name: String, sql: String)] = [
            ("sequences", "SELECT id, sequence, ec_label FROM sequences ORDER BY id"),
            ("rejected_records", "SELECT file, line, record_id, reason FROM rejected_records ORDER BY 1, 2, 3"),
            ("tokens", "SELECT sequence_id, hex(token_ids), residue_start, residue_end FROM tokens ORDER BY 1"),
            ("splits", "SELECT sequence_id, split FROM splits ORDER BY 1"),
            ("training_epochs", "SELECT epoch, train_loss, train_accuracy, select_loss, select_accuracy FROM training_epochs ORDER BY 1"),
            ("checkpoints", "SELECT name, sha256, size_bytes FROM checkpoints ORDER BY 1"),
            ("shards", "SELECT method, shard_index, n_sequences, hex(class_counts) FROM shards ORDER BY 1, 2"),
            ("ig_completeness", "SELECT sequence_id, target_class, p_full, p_baseline, attribution_sum FROM ig_completeness ORDER BY 1"),
            ("neuron_scores", "SELECT method, seed, layer, module, row, col, score, rank FROM neuron_scores ORDER BY 1, 2, 3, 4, 5, 6"),
            ("selections", "SELECT method, retention_fraction, seed, n_kept, n_total FROM selections ORDER BY 1, 2, 3"),
            ("selection_density", "SELECT * FROM selection_density ORDER BY 1, 2, 3, 4, 5"),
            ("evaluations", "SELECT method, retention_fraction, seed, n_test, n_correct, accuracy, macro_f1 FROM evaluations ORDER BY 1, 2, 3"),
            ("evaluation_classes", "SELECT * FROM evaluation_classes ORDER BY 1, 2, 3, 4"),
            ("curves", "SELECT method, granularity, target_class, seed, direction, fraction, n_ablated, n_correct, accuracy, accuracy_low, accuracy_high, macro_f1, p_true FROM curves ORDER BY 1, 2, 3, 4, 5, 6"),
            ("curve_auc", "SELECT * FROM curve_auc ORDER BY 1, 2, 3, 4, 5"),
            ("significance", "SELECT * FROM significance ORDER BY 1, 2, 3, 4, 5"),
            ("sanity_checks", "SELECT * FROM sanity_checks ORDER BY 1, 2, 3, 4, 5"),
            ("sanity_verdicts", "SELECT * FROM sanity_verdicts ORDER BY 1, 2, 3, 4"),
            ("card_neurons", "SELECT * FROM card_neurons ORDER BY 1, 2, 3, 4"),
            ("card_shards", "SELECT shard_index, content_key, n_sequences, hex(peaks) FROM card_shards ORDER BY 1"),
            ("neuron_profiles", "SELECT * FROM neuron_profiles ORDER BY 1, 2, 3"),
            ("neuron_examples", "SELECT * FROM neuron_examples ORDER BY 1, 2, 3, 4, 5"),
            ("neuron_enrichment", "SELECT * FROM neuron_enrichment ORDER BY 1, 2, 3, 4, 5"),
            ("neuron_classes", "SELECT * FROM neuron_classes ORDER BY 1, 2, 3, 4"),
            ("stages", "SELECT stage, content_key, rows_written FROM stages ORDER BY 1"),
        ]
        let expected = try RunDatabase(path: reference, readOnly: true)
        var rng = SplitMix64(seed: 2026)
        var kills = 0, runs = 0, rowsCompared = 0
        var killedIn: [String: Int] = [:]
        let stagesToHit = ["ingest", "tokenize", "split", "train", "attribute", "evaluate", "evidence", "sanity", "cards"]
        func missedStage() -> Bool { stagesToHit.contains { (killedIn[$0] ?? 0) == 0 } }
        while (kills < 20 || missedStage()) && runs < 16 {
            runs += 1
            let db = dir.appendingPathComponent("crash-\(runs).sqlite").path
            var attempts = 0
            while true {
                attempts += 1
                XCTAssertLessThan(attempts, 200, "the run never completes")
                if attempts >= 200 { return }
                let p = Process()
                p.executableURL = URL(fileURLWithPath: exe)
                p.arguments = ["run", spec, "--db", db, "--quiet"]
                p.environment = ProcessInfo.processInfo.environment.merging(
                    ["KNEURON_DEBUG_SHARD_DELAY_MS": "25", "KNEURON_DEBUG_BATCH_DELAY_MS": "10", "KNEURON_DEBUG_STAGE_DELAY_MS": "40"]) { $1 }
                p.standardOutput = FileHandle.nullDevice
                p.standardError = FileHandle.nullDevice
                try p.run()
                // The first attempt of each run aims at one stage in turn (ingest, tokenize, ...):
                // it waits until the ledger says that stage is next, then kills within the
                // 40 ms pause before its work. Later attempts are killed at random moments.
                func nextStage() -> String {
                    let done = (try? RunDatabase(path: db, readOnly: true).stages().map(\.stage)) ?? []
                    return Stage.allCases.first { !done.contains($0.rawValue) }?.rawValue ?? "after report"
                }
                if attempts == 1 {
                    let target = stagesToHit[(runs - 1) % stagesToHit.count]
                    let order = Stage.allCases.map(\.rawValue) + ["after report"]
                    let deadline = Date().addingTimeInterval(120)
                    while p.isRunning && Date() < deadline,
                          order.firstIndex(of: nextStage())! < order.firstIndex(of: target)! { usleep(2_000) }
                    usleep(UInt32(rng.nextIndex(below: 30_000)))
                } else {
                    let deadline = Date().addingTimeInterval(Double(40 + rng.nextIndex(below: 500)) / 1000)
                    while p.isRunning && Date() < deadline { usleep(5_000) }
                }
                if !p.isRunning {
                    p.waitUntilExit()
                    XCTAssertEqual(p.terminationStatus, 0, "a resumed run failed")
                    break
                }
                kill(p.processIdentifier, SIGKILL)
                p.waitUntilExit()
                kills += 1
                let partial = try? RunDatabase(path: db, readOnly: true)
                let done = (try? partial?.stages().map(\.stage)) ?? []
                let next = Stage.allCases.first { !done.contains($0.rawValue) }?.rawValue ?? "after report"
                killedIn[next, default: 0] += 1
            }
            let got = try RunDatabase(path: db, readOnly: true)
            for t in tables {
                let a = try expected.query(t.sql).rows, b = try got.query(t.sql).rows
                XCTAssertEqual(a.count, b.count, "\(t.name) row count (run \(runs))")
                XCTAssertTrue(a == b, "\(t.name) differs from the uninterrupted run (run \(runs))")
                rowsCompared += b.count
            }
            XCTAssertEqual(try got.query("PRAGMA integrity_check").rows, [["ok"]])
        }
        for stage in stagesToHit {
            XCTAssertGreaterThan(killedIn[stage] ?? 0, 0, "no kill landed in \(stage)")
        }
        print("crash harness: \(kills) kill points over \(runs) runs (killed while in: \(killedIn.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))); \(rowsCompared) rows compared, all equal")
        XCTAssertGreaterThanOrEqual(kills, 20)
    }

    /// `kneuron embed` on the committed tiny transformers fixture: the stored `mean` and `cls`
    /// vectors of the last layer equal transformers' last_hidden_state (mean over residues,
    /// position 0) to 1e-5, for sequences embedded in a differently padded batch.
    func testEmbedMatchesTransformersLastHiddenState() throws {
        struct Parity: Decodable { let input_ids: [[Int]]; let attention_mask: [[Int]]; let hidden_states: [[[[Double]]]] }
        let fixture = Self.packageRoot.appendingPathComponent("Tests/ESMTests/Fixtures/tiny-esm")
        let parity = try JSONDecoder().decode(Parity.self, from: Data(contentsOf: fixture.appendingPathComponent("parity.json")))
        let last = parity.hidden_states[parity.hidden_states.count - 1]
        var fasta = ""
        var expected: [String: (mean: [Double], cls: [Double])] = [:]
        for (b, ids) in parity.input_ids.enumerated() {
            let n = parity.attention_mask[b].reduce(0, +)
            let residues = ids[1 ..< n - 1]
            guard !residues.contains(Int(ESMAlphabet.mask)) else { continue }   // <mask> has no FASTA letter
            let letters = String(residues.map { Character(ESMAlphabet.tokens[$0]) })
            fasta += ">S\(b)\n\(letters)\n"
            let H = last[b][0].count
            var mean = [Double](repeating: 0, count: H)
            for t in 1 ..< n - 1 { for j in 0 ..< H { mean[j] += last[b][t][j] / Double(n - 2) } }
            expected["S\(b)"] = (mean, last[b][0])
        }
        XCTAssertEqual(expected.count, 3)
        let fastaPath = dir.appendingPathComponent("fixture.fasta").path
        try fasta.write(toFile: fastaPath, atomically: true, encoding: .utf8)
        let db = try RunDatabase(path: dir.appendingPathComponent("embed.sqlite").path)
        let summary = try Embedder.run(model: fixture.path, fasta: [fastaPath], db: db, layer: nil, batchSize: 2)
        XCTAssertEqual(summary.embedded, 3)
        let sha = try Hashing.sha256(file: fixture.appendingPathComponent("model.safetensors").path).hex
        let layers = parity.hidden_states.count - 1
        let means = try db.embeddings(modelSHA256: sha, layer: layers, pooling: "mean")
        let cls = try db.embeddings(modelSHA256: sha, layer: layers, pooling: "cls")
        var worst = 0.0
        for (id, e) in expected {
            for (a, b) in zip(means[id]!, e.mean) { worst = max(worst, abs(Double(a) - b)) }
            for (a, b) in zip(cls[id]!, e.cls) { worst = max(worst, abs(Double(a) - b)) }
            XCTAssertEqual(means[id]!.count, e.mean.count)
        }
        print(String(format: "embed vs transformers last_hidden_state (mean, cls): max |diff| %.3e", worst))
        XCTAssertLessThan(worst, 1e-5)
        XCTAssertThrowsError(try Embedder.run(model: fixture.path, fasta: [fastaPath], db: db, layer: layers + 1))
    }

    /// predict/embed input: a repeated ID is reported, not silently written twice or overwritten.
    func testRepeatedIDIsRejectedKeepingTheFirst() throws {
        let fasta = dir.appendingPathComponent("dup.fasta").path
        try ">a\nMKV\n>b\nMKL\n>a\nMKW\n".write(toFile: fasta, atomically: true, encoding: .utf8)
        let r = try readAndTokenize([fasta], tokenizer: Tokenizer(maxLength: 40, cropPolicy: .head))
        XCTAssertEqual(r.rows.map(\.id), ["a", "b"])
        XCTAssertEqual(r.rows[0].tokens.ids.count, 5)
        XCTAssertEqual(r.rejected.map(\.id), ["a"])
        XCTAssertEqual(r.rejected.first?.line, 5)
        XCTAssertTrue(r.rejected.first?.reason.hasPrefix("duplicate ID (first at \(fasta):1)") ?? false, "\(r.rejected)")
    }
}
