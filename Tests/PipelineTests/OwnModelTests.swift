import Foundation
import XCTest
@testable import Pipeline
import Store
import ESM
import ProteinData

/// A user's own checkpoint (issue 16): its classifier's labels are honoured. The reference is
/// the tiny-esm fixture (scripts/reference/make_fixtures.py): a random EsmForSequenceClassification
/// whose logits on four token sequences transformers computed (parity.json).
final class OwnModelTests: XCTestCase {
    static let fixture = EndToEndTests.packageRoot.appendingPathComponent("Tests/ESMTests/Fixtures/tiny-esm")

    struct Parity: Decodable { let input_ids: [[Int]]; let attention_mask: [[Int]]; let logits: [[Double]] }

    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("kneuron-own-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    /// A copy of the fixture checkpoint with config.json's `id2label` replaced by `labels`
    /// (nil keeps the fixture's class names) and, with `dropHead`, the classifier removed and an
    /// `lm_head` added, as EsmForMaskedLM stores it.
    func checkpoint(_ name: String, labels: [String]?, dropHead: Bool = false) throws -> String {
        let out = dir.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        var config = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: Self.fixture.appendingPathComponent("config.json"))) as? [String: Any])
        if let labels {
            config["id2label"] = Dictionary(uniqueKeysWithValues: labels.enumerated().map { (String($0.offset), $0.element) })
            config["label2id"] = Dictionary(uniqueKeysWithValues: labels.enumerated().map { ($0.element, $0.offset) })
            config["num_labels"] = labels.count
        }
        let file = try SafeTensorsFile(path: Self.fixture.appendingPathComponent("model.safetensors").path)
        var tensors = try file.tensors.keys.sorted().map { (name: $0, shape: file.tensors[$0]!.shape, values: try file.floats($0)) }
        if dropHead {
            tensors.removeAll { $0.name.hasPrefix("classifier.") }
            let h = config["hidden_size"] as! Int
            tensors.append((name: "lm_head.dense.weight", shape: [h, h], values: [Float](repeating: 0.5, count: h * h)))
            tensors.append((name: "lm_head.bias", shape: [33], values: [Float](repeating: 0, count: 33)))
            config["architectures"] = ["EsmForMaskedLM"]
            config.removeValue(forKey: "id2label"); config.removeValue(forKey: "label2id"); config.removeValue(forKey: "num_labels")
        }
        try JSONSerialization.data(withJSONObject: config).write(to: out.appendingPathComponent("config.json"))
        try SafeTensorsWriter.write(tensors, metadata: ["format": "pt"], to: out.appendingPathComponent("model.safetensors").path)
        return out.path
    }

    /// Four sequences of each EC class in `classes` (random residues, fixed seed) and a spec
    /// that runs ingest ... train with `epochs: 0` on the checkpoint `model`.
    func spec(model: String, classes: [Int], head: String? = nil,
              split: String = "{train: 0.5, select: 0.25, test: 0.25, seed: 1}", extra: String = "") throws -> String {
        var rng = SplitMix64(seed: 11)
        let letters = Array("ACDEFGHIKLMNPQRSTVWY")
        var fasta = "", labels = "Entry\tEC number\n"
        for c in classes {
            for k in 0 ..< 4 {
                let id = "Q\(c)\(k)"
                fasta += ">\(id)\n" + String((0 ..< 24).map { _ in letters[Int(rng.next() % 20)] }) + "\n"
                labels += "\(id)\t\(c).1.1.\(k + 1)\n"
            }
        }
        try fasta.write(to: dir.appendingPathComponent("own.fasta"), atomically: true, encoding: .utf8)
        try labels.write(to: dir.appendingPathComponent("own.ec.tsv"), atomically: true, encoding: .utf8)
        let text = """
        name: own
        inputs: {fasta: [own.fasta], labels: [own.ec.tsv]}
        split: \(split)
        model: {\(model.hasPrefix("preset ") ? "preset: " + model.dropFirst(7) : "checkpoint: " + model), pooling: cls, max_length: 32\(head.map { ", head: \($0)" } ?? "")}
        train: {epochs: 0, batch_size: 4}
        \(extra)
        """
        let path = dir.appendingPathComponent("own-\(UUID().uuidString.prefix(6)).yaml").path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// Runs ingest ... train in process on a new database (or `db`); returns it.
    @discardableResult
    func train(_ spec: String, db: RunDatabase? = nil) throws -> RunDatabase {
        let db = try db ?? RunDatabase(path: dir.appendingPathComponent("\(UUID().uuidString).sqlite").path)
        let ctx = try RunContext(spec: try PipelineSpec.load(path: spec), specPath: spec, db: db, quiet: true)
        _ = try PipelineRunner(context: ctx).run([.ingest, .tokenize, .split, .train])
        return db
    }

    /// The final model's logits on the fixture's parity sequences (B x C, row-major).
    func finalLogits(_ db: RunDatabase) throws -> (logits: [Float], classes: Int, parity: Parity) {
        let parity = try JSONDecoder().decode(Parity.self, from: Data(contentsOf: Self.fixture.appendingPathComponent("parity.json")))
        let dir = try XCTUnwrap(try db.checkpoint(named: "final")).directory
        let loaded = try Checkpoint.load(directory: dir)
        let model = try ESMClassifier(config: loaded.config, parameters: loaded.parameters)
        let lengths = parity.attention_mask.map { $0.reduce(0, +) }
        let batch = TokenBatch(sequences: zip(parity.input_ids, lengths).map { ids, n in ids.prefix(n).map(Int32.init) }, padTokenId: 1)
        return (model.forward(batch), loaded.config.numLabels, parity)
    }

    func testCheckpointLabelsParseAsECNumbers() {
        XCTAssertEqual(HeadMapping.ecLabel("1.-.-.- Oxidoreductases", level: 1)?.description, "1.-.-.-")
        XCTAssertEqual(HeadMapping.ecLabel("3.4", level: 2)?.description, "3.4.-.-")
        XCTAssertEqual(HeadMapping.ecLabel("EC 2.7.11.1", level: 4)?.description, "2.7.11.1")
        XCTAssertEqual(HeadMapping.ecLabel("hydrolases", level: 1)?.description, "3.-.-.-")
        XCTAssertNil(HeadMapping.ecLabel("hydrolases", level: 2), "a class name says nothing about subclasses")
        XCTAssertNil(HeadMapping.ecLabel("LABEL_0", level: 1))
        XCTAssertNil(HeadMapping.ecLabel("", level: 1))
        XCTAssertEqual(HeadMapping.ecLabel("\t1.-.-.-\n", level: 1)?.description, "1.-.-.-")
        XCTAssertNil(HeadMapping.ecLabel("1.-.-.- Hydrolases", level: 1), "the EC and the name disagree")
    }

    /// Same labels (the fixture's ExPASy class names, in EC order): the head is kept unchanged;
    /// the fine-tuned model's logits are transformers' (1e-5).
    func testSameLabelsKeepTheHead() throws {
        let db = try train(try spec(model: Self.fixture.path, classes: Array(1 ... 7)))
        let head = try XCTUnwrap(try db.modelHead())
        XCTAssertEqual(head.decision, "kept")
        XCTAssertEqual(head.classes.map(\.checkpointIndex), Array(0 ..< 7))
        XCTAssertEqual(head.classes[2].checkpointLabel, "Hydrolases")
        let (logits, c, parity) = try finalLogits(db)
        XCTAssertEqual(c, 7)
        var worst = 0.0
        for s in parity.logits.indices { for k in 0 ..< c { worst = max(worst, abs(Double(logits[s * c + k]) - parity.logits[s][k])) } }
        XCTAssertLessThan(worst, 1e-5)
    }

    /// Reordered labels (EC strings, classes 7 ... 1): the run's class k (EC k+1) is the stored
    /// output 6 - k, so its logit is transformers' logit of that output (1e-5); the saved
    /// config names the run's classes.
    func testReorderedLabelsArePermutedToTheDataOrder() throws {
        let ckpt = try checkpoint("reversed", labels: (1 ... 7).reversed().map { "\($0).-.-.-" })
        let db = try train(try spec(model: ckpt, classes: Array(1 ... 7)))
        let head = try XCTUnwrap(try db.modelHead())
        XCTAssertEqual(head.decision, "reordered")
        XCTAssertEqual(head.classes.map(\.checkpointIndex), Array((0 ..< 7).reversed()))
        XCTAssertTrue(head.detail.contains("1.-.-.- <- output 6 (1.-.-.-)"), head.detail)
        let (logits, c, parity) = try finalLogits(db)
        var worst = 0.0
        for s in parity.logits.indices { for k in 0 ..< c { worst = max(worst, abs(Double(logits[s * c + k]) - parity.logits[s][6 - k])) } }
        XCTAssertLessThan(worst, 1e-5)
        let final = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: try XCTUnwrap(try db.checkpoint(named: "final")).directory).appendingPathComponent("config.json"))) as? [String: Any]
        XCTAssertEqual((final?["id2label"] as? [String: String])?["0"], "1.-.-.- Oxidoreductases")
    }

    /// Labels the data lacks (or a data class the head lacks): an error naming both lists, and
    /// train is not recorded; `model.head: reinit` then draws a new head with the seed.
    func testMissingLabelsAreAnErrorUnlessReinit() throws {
        let refused = try RunDatabase(path: dir.appendingPathComponent("refused.sqlite").path)
        XCTAssertThrowsError(try train(try spec(model: Self.fixture.path, classes: Array(1 ... 6)), db: refused)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("its outputs 6: Translocases are not among the data's classes"), text)
            XCTAssertTrue(text.contains("model.head: reinit"), text)
            XCTAssertTrue(text.contains("6.-.-.- Ligases"), text)
        }
        XCTAssertEqual(try refused.stages().count, 0, "checked before the first stage: nothing recorded")
        XCTAssertNil(try refused.run(), "the run is not even registered")
        let moved = try checkpoint("ec-labels", labels: (1 ... 7).map { "\($0).-.-.-" })
        XCTAssertThrowsError(try train(try spec(model: moved, classes: [1, 2, 3, 4, 5, 6]))) { error in
            XCTAssertTrue("\(error)".contains("are not among the data's classes"), "\(error)")
        }
        let db = try train(try spec(model: Self.fixture.path, classes: Array(1 ... 6), head: "reinit"))
        let head = try XCTUnwrap(try db.modelHead())
        XCTAssertEqual(head.decision, "reinitialised")
        XCTAssertTrue(head.classes.isEmpty)
        let final = try Checkpoint.load(directory: try XCTUnwrap(try db.checkpoint(named: "final")).directory)
        let fresh = try Checkpoint.load(directory: Self.fixture.path, numLabels: 6, seed: 0, initialiseHead: true)
        XCTAssertEqual(final.parameters.values, fresh.parameters.values, "reinit = the seeded head of Checkpoint.load")
        let stored = try Checkpoint.load(directory: Self.fixture.path)
        let w = stored.parameters.layout.spec(.classifierDenseWeight)
        XCTAssertNotEqual(final.parameters.tensor(final.parameters.layout.spec(.classifierDenseWeight)), stored.parameters.tensor(w))
        XCTAssertEqual(final.parameters.tensor(final.parameters.layout.spec(layer: 1, .keyWeight)),
                       stored.parameters.tensor(stored.parameters.layout.spec(layer: 1, .keyWeight)), "the encoder is loaded")
    }

    /// No classifier (EsmForMaskedLM with an lm_head): the encoder is loaded, the lm_head
    /// ignored and said so, the head initialised; `model.head: keep` is then an error. Labels
    /// that are not EC labels are an error too.
    func testNoClassifierInitialisesTheHeadAndGenericLabelsAreRefused() throws {
        let masked = try checkpoint("masked", labels: nil, dropHead: true)
        let db = try train(try spec(model: masked, classes: [1, 2, 3]))
        let head = try XCTUnwrap(try db.modelHead())
        XCTAssertEqual(head.decision, "initialised")
        XCTAssertTrue(head.ignored.contains("lm_head: 2 tensors"), head.ignored)
        let final = try Checkpoint.load(directory: try XCTUnwrap(try db.checkpoint(named: "final")).directory)
        XCTAssertEqual(final.config.numLabels, 3)
        let stored = try Checkpoint.load(directory: Self.fixture.path)
        XCTAssertEqual(final.parameters.tensor(final.parameters.layout.spec(.wordEmbeddings)),
                       stored.parameters.tensor(stored.parameters.layout.spec(.wordEmbeddings)))
        XCTAssertThrowsError(try train(try spec(model: masked, classes: [1, 2, 3], head: "keep"))) { error in
            XCTAssertTrue("\(error)".contains("EsmForMaskedLM) has no classifier head to keep"), "\(error)")
        }
        let generic = try checkpoint("generic", labels: (0 ..< 7).map { "LABEL_\($0)" })
        XCTAssertThrowsError(try train(try spec(model: generic, classes: Array(1 ... 7)))) { error in
            XCTAssertTrue("\(error)".contains("labels that are not EC numbers or class names (0: LABEL_0"), "\(error)")
        }
        XCTAssertThrowsError(try PipelineSpec.parse(yaml: "name: x\ninputs: {fasta: [a], labels: [b]}\nmodel: {preset: tiny, head: keep}\n")) { error in
            XCTAssertTrue("\(error)".contains("model.head applies to a model.checkpoint"), "\(error)")
        }
    }

    /// `classes: [1, 2, 3]` on data of classes 1 ... 4: class 4's sequences are rejected with
    /// file, line and reason; with `select: 0, select_on: test` there is no select split.
    func testClassFilterAndSelectionOnTheTestSplit() throws {
        let spec = try self.spec(model: "preset tiny", classes: [1, 2, 3, 4], split: "{train: 0.75, select: 0, test: 0.25, seed: 1, select_on: test}",
                                 extra: "classes: [1, 2, 3]")
        let db = try train(spec)
        XCTAssertEqual(try db.classes().map(\.ecLabel), ["1.-.-.-", "2.-.-.-", "3.-.-.-"])
        let rejected = try db.rejectedRecords()
        XCTAssertEqual(rejected.map(\.recordID), ["Q40", "Q41", "Q42", "Q43"])
        XCTAssertEqual(rejected.map(\.line), [25, 27, 29, 31], "FASTA header lines")
        XCTAssertTrue(rejected.allSatisfy { $0.reason == "class 4.-.-.- is not among the spec's classes (1.-.-.-, 2.-.-.-, 3.-.-.-)" }, "\(rejected)")
        XCTAssertTrue(rejected.allSatisfy { $0.file.hasSuffix("own.fasta") })
        XCTAssertEqual(try db.sequenceIDs(split: "select").count, 0)
        XCTAssertEqual(try db.sequenceIDs(split: "test").count, 3, "a quarter of each class's 4")
        XCTAssertEqual(try db.sequenceIDs(split: "train").count, 9)

        let absent = try self.spec(model: "preset tiny", classes: [1, 2], extra: "classes: [1, 5]")
        XCTAssertThrowsError(try train(absent)) { error in
            XCTAssertTrue("\(error)".contains("classes lists 5.-.-.- but no accepted sequence has that label; the data's classes are 1.-.-.-, 2.-.-.-"), "\(error)")
        }
        for (yaml, message) in [("label_level: 2\nclasses: [3.4.1]", "3.4.1.- is finer than label_level 2"),
                                ("classes: [abc]", "'abc' is not an EC class"), ("classes: [1, 1]", "is listed twice"),
                                ("classes: []", "list at least one class")] {
            XCTAssertThrowsError(try PipelineSpec.parse(yaml: "name: x\ninputs: {fasta: [a], labels: [b]}\n" + yaml + "\n")) { error in
                XCTAssertTrue("\(error)".contains(message), "\(yaml): \(error)")
            }
        }
        // One class left, or an empty split: refused before ingest writes anything.
        let one = try self.spec(model: "preset tiny", classes: [1, 2], extra: "classes: [1]")
        let oneDB = try RunDatabase(path: dir.appendingPathComponent("one.sqlite").path)
        XCTAssertThrowsError(try train(one, db: oneDB)) { XCTAssertTrue("\($0)".contains("span 1 class(es); a classifier needs at least 2"), "\($0)") }
        XCTAssertEqual(try oneDB.stages().count, 0)
        XCTAssertThrowsError(try PipelineSpec.parse(yaml: "name: x\ninputs: {fasta: [a], labels: [b]}\nmodel: {preset: tiny, checkpoint: c}\n")) {
            XCTAssertTrue("\($0)".contains("give either model.preset"), "\($0)")
        }
        let level2 = try PipelineSpec.parse(yaml: "name: x\ninputs: {fasta: [a], labels: [b]}\nlabel_level: 2\nclasses: [3, 3.4.-.-]\n")
        XCTAssertEqual(level2.classes?.map(\.description), ["3.-.-.-", "3.4.-.-"])
    }

    /// `kneuron predict` on a HuggingFace directory holding only pytorch_model.bin (torch.save of
    /// the state_dict) writes transformers' logits (parity.json, 1e-5).
    func testPredictOnPytorchModelBinGivesTransformersLogits() throws {
        let parity = try JSONDecoder().decode(Parity.self, from: Data(contentsOf: Self.fixture.appendingPathComponent("parity.json")))
        var fasta = ""
        var expected: [String: [Double]] = [:]
        for (b, ids) in parity.input_ids.enumerated() {
            let n = parity.attention_mask[b].reduce(0, +)
            guard !ids[1 ..< n - 1].contains(Int(ESMAlphabet.mask)) else { continue }
            fasta += ">S\(b)\n" + String(ids[1 ..< n - 1].map { Character(ESMAlphabet.tokens[$0]) }) + "\n"
            expected["S\(b)"] = parity.logits[b]
        }
        let fastaPath = dir.appendingPathComponent("parity.fasta").path
        try fasta.write(toFile: fastaPath, atomically: true, encoding: .utf8)
        let out = dir.appendingPathComponent("pred.tsv").path
        let bin = Self.fixture.deletingLastPathComponent().appendingPathComponent("tiny-esm-bin").path
        let summary = try Predictor.run(model: bin, fasta: [fastaPath], output: out)
        XCTAssertEqual(summary.predicted, 3)
        var worst = 0.0
        for line in try String(contentsOfFile: out, encoding: .utf8).split(separator: "\n").dropFirst() {
            let f = line.split(separator: "\t")
            let want = try XCTUnwrap(expected[String(f[0])])
            for k in 0 ..< 7 { worst = max(worst, abs(Double(f[1 + k])! - want[k])) }
        }
        XCTAssertLessThan(worst, 1e-5)
    }

    /// `kneuron embed` on a fair-esm .pt file gives transformers' last_hidden_state, averaged
    /// over the residues (tiny-esm2.json, 1e-5); a run on it initialises the head and says the
    /// lm_head was not loaded.
    func testFairESMFileEmbedsAsTransformersAndTrainsWithANewHead() throws {
        struct Reference: Decodable { let input_ids: [[Int]]; let last_hidden_state: [[[Double]]] }
        let pt = Self.fixture.deletingLastPathComponent().appendingPathComponent("tiny-esm2.pt").path
        let reference = try JSONDecoder().decode(Reference.self, from: Data(contentsOf: Self.fixture.deletingLastPathComponent().appendingPathComponent("tiny-esm2.json")))
        var fasta = ""
        for (i, ids) in reference.input_ids.enumerated() {
            fasta += ">R\(i)\n" + String(ids.dropFirst().dropLast().map { Character(ESMAlphabet.tokens[$0]) }) + "\n"
        }
        let fastaPath = dir.appendingPathComponent("fair.fasta").path
        try fasta.write(toFile: fastaPath, atomically: true, encoding: .utf8)
        let db = try RunDatabase(path: dir.appendingPathComponent("embed.sqlite").path)
        let summary = try Embedder.run(model: pt, fasta: [fastaPath], db: db, layer: nil)
        XCTAssertEqual(summary.embedded, reference.input_ids.count)
        let sha = try Hashing.sha256(file: pt).hex
        let means = try db.embeddings(modelSHA256: sha, layer: 2, pooling: "mean")
        var worst = 0.0
        for (i, states) in reference.last_hidden_state.enumerated() {
            let got = try XCTUnwrap(means["R\(i)"])
            for h in 0 ..< 32 {
                let mean = states.dropFirst().dropLast().map { $0[h] }.reduce(0, +) / Double(states.count - 2)
                worst = max(worst, abs(Double(got[h]) - mean))
            }
        }
        XCTAssertLessThan(worst, 1e-5)

        let run = try train(try spec(model: pt, classes: [1, 2, 3]))
        let head = try XCTUnwrap(try run.modelHead())
        XCTAssertEqual(head.decision, "initialised")
        XCTAssertTrue(head.ignored.contains("lm_head: 6 tensors"), head.ignored)
    }

    /// A run whose model cannot fit stops before any work with the estimate and what to change;
    /// the estimate's parts on the t6_8M shape are the formula's, worked by hand (python:
    /// P = 7,513,927 parameters with 7 classes; integrated gradients 4 x (2P + 4,096 x 37,760
    /// + 4 x 256^2) bytes plus 16 bytes per scored q/k/v weight).
    func testMemoryIsPlannedBeforeWork() throws {
        var spec = try PipelineSpec.parse(yaml: "name: m\ninputs: {fasta: [a], labels: [b]}\nmodel: {preset: esm2_t6_8M, max_length: 256}\ntrain: {batch_size: 8}\n")
        let config = try ESMConfig.preset("esm2_t6_8M", numLabels: 7)
        let plan = MemoryPlan(config: config, spec: spec)
        let igBytes: Int64 = 4 * (2 * 7_513_927 + 4096 * 37_760 + 4 * 256 * 256)
        let sumBytes: Int64 = 16 * (6 * 3 * 320 * 320)
        XCTAssertEqual(plan.attribution, igBytes + sumBytes, "+ float64 sums of the q/k/v weights")
        XCTAssertEqual(plan.trainingActivations, 4 * (2048 * 37_760 + 4 * 256 * 256))
        XCTAssertEqual(plan.training, 4 * 5 * 7_513_927)
        spec.train.batchSize = 4096
        XCTAssertEqual(MemoryPlan(config: config, spec: spec).trainingActivations, 4 * (4096 * 256 * 37_760 + 4 * 256 * 256), "158 GB for 4096 x 256 tokens per step")
        spec.train.batchSize = Int.max
        XCTAssertEqual(MemoryPlan(config: config, spec: spec).total, Int64(9.0e18), "an absurd batch saturates instead of overflowing")

        let refused = try RunDatabase(path: dir.appendingPathComponent("big.sqlite").path)
        let big = try self.spec(model: "preset esm2_t33_650M", classes: [1, 2])
        var text = try String(contentsOfFile: big, encoding: .utf8)
        text = text.replacingOccurrences(of: "max_length: 32", with: "max_length: 1024").replacingOccurrences(of: "batch_size: 4", with: "batch_size: 4096")
        try text.write(toFile: big, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try train(big, db: refused)) { error in
            let message = "\(error)"
            XCTAssertTrue(message.contains("of memory but this process may use"), message)
            XCTAssertTrue(message.contains("Lower train.batch_size"), message)
        }
        XCTAssertEqual(try refused.stages().count, 0)
        XCTAssertNil(try refused.run())
    }
}
