import XCTest
@testable import Pipeline

final class PipelineSpecTests: XCTestCase {
    let minimal = """
    name: t
    inputs:
      fasta: [a.fasta]
      labels: [a.tsv]
    """

    func testDefaults() throws {
        let s = try PipelineSpec.parse(yaml: minimal)
        XCTAssertEqual(s.labelLevel, 1)
        XCTAssertEqual(s.split.train, 0.70)
        XCTAssertEqual(s.split.selectOn, .select)
        XCTAssertEqual(s.attribution.steps, 20)
        XCTAssertEqual(s.attribution.methods, [.activation, .integratedGradients])
        XCTAssertEqual(s.selection.retentionFractions, [0.50, 0.25, 0.10, 0.01])
        XCTAssertEqual(s.selection.randomSeeds.count, 3)
        XCTAssertEqual(s.model.pooling, .cls)
    }

    func testQuickstartSpecParses() throws {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("pipelines/quickstart.yaml").path
        let s = try PipelineSpec.load(path: path)
        XCTAssertEqual(s.name, "quickstart")
        XCTAssertEqual(s.inputs.fasta.count, 2)
        XCTAssertEqual(s.model.pooling, .mean)
    }

    func assertSpecError(_ yaml: String, _ expected: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try PipelineSpec.parse(yaml: yaml), file: file, line: line) { error in
            XCTAssertEqual("\(error)", expected, file: file, line: line)
        }
    }

    /// The engine's keys: types, names from HuggingFace's modules, errors naming the key path
    /// and the choices; the content-key encoding leaves defaults out and ignores list order.
    func testAttributionEngineKeys() throws {
        let s = try PipelineSpec.parse(yaml: minimal + """

            attribution:
              methods: [gradient_x_activation, activation]
              modules: [output, intermediate]
              granularity: [neuron]
              targets: [per_class, true_class]
            """)
        XCTAssertEqual(s.attribution.methods, [.gradientXActivation, .activation])
        XCTAssertEqual(s.attribution.modules, [.output, .intermediate])
        XCTAssertEqual(s.attribution.granularity, [.neuron])
        XCTAssertEqual(s.attribution.targets, [.perClass, .trueClass])
        assertSpecError(minimal + "\nattribution:\n  modules: [intermediate.dense]\n",
                        "at attribution.modules[0]: unknown value 'intermediate.dense'; choose one of query, key, value, attention_output, intermediate, output")
        assertSpecError(minimal + "\nattribution:\n  granularity: [unit]\n", "at attribution.granularity[0]: unknown value 'unit'; choose one of weight, neuron")
        assertSpecError(minimal + "\nattribution:\n  targets: []\n", "at attribution.targets: give at least one of: true_class, per_class")
        assertSpecError(minimal + "\nattribution:\n  modules: [key, key]\n", "at attribution.modules: key is listed twice; list each entry once")
        assertSpecError(minimal + "\nattribution:\n  modules:\n", "at attribution.modules: the key has no value; give a list, or omit the key for the default")
        // Defaults are left out of the content key's encoding (runs recorded before the keys
        // existed keep their keys), and the order of a list does not matter.
        XCTAssertEqual(canonicalJSON(try PipelineSpec.parse(yaml: minimal).attribution), #"{"methods":["activation","integrated_gradients"],"shard_size":16,"steps":20}"#)
        let reordered = try PipelineSpec.parse(yaml: minimal + "\nattribution:\n  methods: [integrated_gradients, activation]\n  modules: [value, query, key]\n")
        XCTAssertEqual(canonicalJSON(reordered.attribution), canonicalJSON(try PipelineSpec.parse(yaml: minimal).attribution))
        // The evidence stage sorts its lists: their order does not change its content key.
        let a = try PipelineSpec.parse(yaml: minimal + "\nevidence: {fractions: [0.5, 0.1], directions: [delete, retain]}\n")
        let b = try PipelineSpec.parse(yaml: minimal + "\nevidence: {fractions: [0.1, 0.5], directions: [retain, delete]}\n")
        XCTAssertEqual(canonicalJSON(a.evidence), canonicalJSON(b.evidence))
        XCTAssertEqual(canonicalJSON(b.evidence), #"{"bootstrap_resamples":1000,"directions":["retain","delete"],"edit_factors":[0,2],"edit_random_sets":100,"edit_top":10,"fractions":[0.1,0.5],"random_rankings":100,"seed":1}"#)
        // Spec errors of the new keys name the key and what to do.
        for (yaml, expected) in [("evidence: {edit_factors: [1]}", "at evidence.edit_factors: expected factors in [0, 1000] other than 1"),
                                 ("evidence: {edit_top: 0}", "at evidence.edit_top: expected 1 or more"),
                                 ("evaluation: {ablation: median}", "at evaluation.ablation: unknown value 'median'; choose one of zero, mean"),
                                 ("sanity: {max_sequences: 1}", "at sanity.max_sequences: expected 2 or more"),
                                 ("sanity: {max_spearman: 2}", "at sanity.max_spearman: expected a correlation in (-1, 1]"),
                                 ("sanity: {labels: true}", "sanity"),
                                 ("evidence: {edit_factors: [1.0000000000000002]}", "other than 1"),
                                 ("sanity: {seed: -1}", "expected a non-negative integer"),
                                 ("attribution: {max_sequences: 1}", "at attribution.max_sequences: the sanity checks re-score at least 2")] {
            XCTAssertThrowsError(try PipelineSpec.parse(yaml: minimal + "\n" + yaml + "\n"), yaml) { e in
                XCTAssertTrue("\(e)".contains(expected), "\(yaml): \(e)")
            }
        }
    }

    func testWrongTypeNamesKeyPath() {
        assertSpecError(minimal + "\ntrain:\n  learning_rate: fast\n", "at train.learning_rate: expected a number")
        assertSpecError(minimal + "\nattribution:\n  steps: [1]\n", "at attribution.steps: expected a single value, not a list or mapping")
    }

    func testUnknownKeyIsAnError() {
        assertSpecError(minimal + "\ntrain:\n  learnig_rate: 0.1\n",
                        "at train.learnig_rate: unknown key; allowed here: batch_size, epochs, learning_rate, max_grad_norm, schedule, seed, warmup_fraction, weight_decay")
        XCTAssertThrowsError(try PipelineSpec.parse(yaml: minimal + "\nextra: 1\n")) { e in
            XCTAssertTrue("\(e)".hasPrefix("at extra: unknown key"), "\(e)")
        }
    }

    func testMissingRequiredKey() {
        assertSpecError("name: t\ninputs:\n  fasta: [a]\n", "at inputs.labels: required key is missing")
    }

    func testRangeChecks() {
        assertSpecError(minimal + "\nsplit:\n  train: 0.8\n  select: 0.15\n  test: 0.15\n", "at split: train + select + test must be 1, got 1.1")
        assertSpecError(minimal + "\nselection:\n  random_seeds: [1, 2]\n", "at selection.random_seeds: give at least 3 distinct seeds for the random baseline")
        assertSpecError(minimal + "\nevidence:\n  random_rankings: 100000000\n",
                        "at evidence.random_rankings: expected 2 ... 100,000 random rankings (100 or more for p-values a reviewer accepts: the smallest is 1/(N + 1)), got 100000000")
        assertSpecError(minimal + "\nevidence:\n  bootstrap_resamples: 99\n",
                        "at evidence.bootstrap_resamples: expected 100 ... 1,000,000 resamples (1,000 or more for a 95% interval), got 99")
        assertSpecError(minimal + "\nevidence:\n  fractions: [0.5, 1.0]\n", "at evidence.fractions: expected fractions in (0, 1), got 1.0")
        assertSpecError(minimal + "\nevidence:\n  directions: [retain, retain]\n", "at evidence.directions: retain is listed twice; list each entry once")
        assertSpecError(minimal + "\nmodel:\n  max_length: 5000\n", "at model.max_length: expected 3...1026 tokens, got 5000")
        assertSpecError(minimal + "\nlabel_level: 7\n", "at label_level: expected 1...4 (1 = EC class), got 7")
        assertSpecError(minimal + "\nmodel:\n  preset: huge\n", "at model.preset: unknown preset 'huge'; choose one of esm2_t6_8M, esm2_t12_35M, esm2_t30_150M, esm2_t33_650M, small, mini, tiny")
    }

    /// The cards keys: defaults, ranges naming the key, the split's spellings, an empty select split.
    func testCardsKeys() throws {
        let d = try PipelineSpec.parse(yaml: minimal).cards
        XCTAssertEqual([d.top, d.examples, d.topSequences, d.shardSize], [20, 20, 100, 64])
        XCTAssertEqual(d.split, .train)
        XCTAssertEqual(try PipelineSpec.parse(yaml: minimal + "\ncards: {split: test, top: 0}\n").cards.split, .test)
        assertSpecError(minimal + "\ncards: {top: -1}\n", "at cards.top: expected 0 or more, got -1 (0 turns the cards off)")
        assertSpecError(minimal + "\ncards: {shard_size: 0}\n", "at cards.shard_size: expected 1 or more, got 0")
        assertSpecError(minimal + "\ncards: {examples: 0}\n", "at cards.examples: expected 1 or more, got 0")
        assertSpecError(minimal + "\ncards: {control: -1}\n", "at cards.control: expected 0 or more, got -1 (0 turns the control off)")
        XCTAssertEqual(try PipelineSpec.parse(yaml: minimal).cards.control, 100)
        assertSpecError(minimal + "\ncards: {split: all}\n", "at cards.split: unknown value 'all'; choose one of train, select, test")
        assertSpecError(minimal + "\ncards: {windows: 3}\n", "at cards.windows: unknown key; allowed here: control, examples, shard_size, split, top, top_sequences")
        assertSpecError(minimal + "\nsplit: {train: 0.8, select: 0, test: 0.2, select_on: test}\ncards: {split: select}\n",
                        "at cards.split: the select split is empty (split.select: 0): give cards.split: train or test")
    }

    func testNeuronsKeys() throws {
        XCTAssertEqual(try PipelineSpec.parse(yaml: minimal).neurons.memoryMB, 512)
        XCTAssertEqual(try PipelineSpec.parse(yaml: minimal + "\nneurons: {memory_mb: 0.25}\n").neurons.memoryMB, 0.25)
        assertSpecError(minimal + "\nneurons: {memory_mb: 0}\n", "at neurons.memory_mb: expected a positive number of MiB, got 0.0")
        assertSpecError(minimal + "\nneurons: {memory_mb: -5}\n", "at neurons.memory_mb: expected a positive number of MiB, got -5.0")
        assertSpecError(minimal + "\nneurons: {memory: 5}\n", "at neurons.memory: unknown key; allowed here: memory_mb")
    }

    func testDuplicatesEnumsAndImpossibleTrainingValues() {
        assertSpecError(minimal + "\nattribution:\n  methods: [activation, activation]\n",
                        "at attribution.methods: activation is listed twice; list each entry once")
        assertSpecError(minimal + "\nselection:\n  retention_fractions: [0.5, 0.5]\n",
                        "at selection.retention_fractions: 0.5 is listed twice; list each entry once")
        assertSpecError(minimal + "\nselection:\n  retention_fractions: []\n",
                        "at selection.retention_fractions: give at least one fraction in (0, 1), e.g. [0.5, 0.25, 0.1, 0.01]")
        assertSpecError(minimal + "\nselection:\n  retention_fractions: [0.5, 1.0]\n",
                        "at selection.retention_fractions: expected fractions in (0, 1), got 1.0 (the full model, fraction 1, is always evaluated)")
        assertSpecError(minimal + "\nselection:\n  random_seeds: [1, 1, 2, 3]\n",
                        "at selection.random_seeds: 1 is listed twice; list each entry once")
        assertSpecError("name: t\ninputs:\n  fasta: [a.fasta, a.fasta]\n  labels: [a.tsv]\n",
                        "at inputs.fasta: a.fasta is listed twice; list each entry once")
        assertSpecError(minimal + "\nmodel:\n  crop: middle\n",
                        "at model.crop: unknown value 'middle'; choose one of head, center, reject")
        assertSpecError(minimal + "\ntrain:\n  max_grad_norm: -1\n",
                        "at train.max_grad_norm: expected a positive finite number, or null for no clipping; got -1.0")
        assertSpecError(minimal + "\ntrain:\n  weight_decay: -100\n",
                        "at train.weight_decay: expected a finite number >= 0, got -100.0")
        assertSpecError(minimal + "\ntrain:\n  learning_rate: .inf\n",
                        "at train.learning_rate: expected a positive finite number")
        XCTAssertNil(try PipelineSpec.parse(yaml: minimal + "\ntrain:\n  max_grad_norm: null\n").train.maxGradNorm)
    }

    func testSplitAssignmentIsStratifiedSeededAndKeepsDuplicatesTogether() {
        var items: [(id: String, sequence: String, label: String)] = []
        for c in 0 ..< 3 { for i in 0 ..< 40 { items.append(("C\(c)S\(i)", "SEQ\(c)_\(i)", "\(c + 1).-.-.-")) } }
        items.append(("DUP1", "SHARED", "1.-.-.-"))
        items.append(("DUP2", "SHARED", "1.-.-.-"))
        let a = SplitStage.assign(items, fractions: (0.7, 0.15, 0.15), seed: 7)
        XCTAssertEqual(a, SplitStage.assign(items, fractions: (0.7, 0.15, 0.15), seed: 7), "same seed, same split")
        XCTAssertNotEqual(a, SplitStage.assign(items, fractions: (0.7, 0.15, 0.15), seed: 8))
        XCTAssertEqual(a["DUP1"], a["DUP2"])
        for c in 2 ... 3 {
            let ids = items.filter { $0.label == "\(c).-.-.-" }.map(\.id)
            XCTAssertEqual(ids.filter { a[$0] == "train" }.count, 28)
            XCTAssertEqual(ids.filter { a[$0] == "select" }.count, 6)
            XCTAssertEqual(ids.filter { a[$0] == "test" }.count, 6)
        }
    }

    func testMetrics() {
        let m = ClassificationMetrics(labels: [0, 0, 1, 1, 2], predictions: [0, 1, 1, 1, 0], classes: 3)
        XCTAssertEqual(m.correct, 3)
        XCTAssertEqual(m.accuracy, 0.6, accuracy: 1e-12)
        // F1: class0 tp1 fp1 fn1 -> 0.5; class1 tp2 fp1 fn0 -> 0.8; class2 tp0 fn1 -> 0
        XCTAssertEqual(m.macroF1, (0.5 + 0.8 + 0) / 3, accuracy: 1e-12)
        XCTAssertEqual(m.perClass.map(\.n), [2, 2, 1])
    }

    func testKeptCount() {
        XCTAssertEqual(SelectStage.keptCount(0.5, total: 12), 6)
        XCTAssertEqual(SelectStage.keptCount(0.01, total: 12), 1)
        XCTAssertEqual(SelectStage.keptCount(0.25, total: 294_912), 73_728)
    }
}
