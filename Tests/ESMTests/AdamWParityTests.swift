import Foundation
import XCTest
@testable import ESM
@testable import Training

/// 10 AdamW fine-tuning steps against torch.optim.AdamW + clip_grad_norm_ on the tiny-esm
/// fixture (scripts/reference/make_fixtures.py, `adamw` in parity.json): the loss before
/// every step within 1e-4 and the logits after the last step within 1e-4.
final class AdamWParityTests: XCTestCase {
    private struct Parity: Decodable {
        struct AdamW: Decodable {
            let learning_rate: Float
            let weight_decay: Float
            let max_grad_norm: Float
            let losses: [Double]
            let final_logits: [[Double]]
        }
        let input_ids: [[Int]]
        let attention_mask: [[Int]]
        let labels: [Int]
        let adamw: AdamW
    }

    func testTenStepsTrackPyTorch() throws {
        let parity = try JSONDecoder().decode(Parity.self, from: Data(contentsOf: Fixture.tinyESM.appendingPathComponent("parity.json")))
        let (config, parameters, _) = try Checkpoint.load(directory: Fixture.tinyESM.path)
        let model = try ESMClassifier(config: config, parameters: parameters)
        let a = parity.adamw
        let trainer = Trainer(model: model, optimizer: AdamWConfig(learningRate: a.learning_rate, weightDecay: a.weight_decay),
                              batchSize: 4, maxGradNorm: a.max_grad_norm)
        let examples = zip(zip(parity.input_ids, parity.attention_mask), parity.labels).map { pair, label in
            Example(tokens: pair.0.prefix(pair.1.reduce(0, +)).map(Int32.init), label: label)
        }
        var worst = 0.0
        for (k, expected) in a.losses.enumerated() {
            let loss = Double(trainer.step(examples).loss)
            print(String(format: "adamw step %2d: loss %.7f (PyTorch %.7f) |diff| %.2e", k + 1, loss, expected, abs(loss - expected)))
            worst = max(worst, abs(loss - expected))
        }
        XCTAssertLessThan(worst, 1e-4)
        XCTAssertLessThan(a.losses.last!, a.losses.first! - 0.1, "the fixture's losses must actually move")
        let logits = model.forward(TokenBatch(sequences: examples.map(\.tokens), padTokenId: Int32(config.padTokenId)))
        let c = config.numLabels
        var logitDiff = 0.0
        for (b, row) in a.final_logits.enumerated() {
            for (j, v) in row.enumerated() { logitDiff = max(logitDiff, abs(Double(logits[b * c + j]) - v)) }
        }
        print(String(format: "adamw: logits after 10 steps max |diff| %.3e", logitDiff))
        XCTAssertLessThan(logitDiff, 1e-4)
    }
}

final class LearningRateScheduleTests: XCTestCase {
    /// Values of transformers' get_linear_schedule_with_warmup(num_warmup_steps=2, num_training_steps=10).
    func testLinearWithWarmupMatchesTransformers() {
        let s = LearningRateSchedule.linear(warmupSteps: 2, totalSteps: 10)
        let expected: [Float] = [0, 0.5, 1, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125, 0, 0]
        XCTAssertEqual((0 ..< 12).map { s.factor(stepsDone: $0) }, expected)
        XCTAssertEqual(LearningRateSchedule.linear(warmupSteps: 0, totalSteps: 4).factor(stepsDone: 0), 1)
        XCTAssertEqual(LearningRateSchedule.constant.factor(stepsDone: 1000), 1)
    }
}
