import Attribution
import ESM
import Foundation

/// The memory a run will need, estimated before the first stage from the model's shape and
/// the spec, against the memory this process may use; a run that cannot fit stops at once with
/// the numbers and what to change instead of being killed by the OOM killer hours later.
///
/// The estimate counts what `ESMClassifier` allocates (its buffers, `Sources/ESM/ESMClassifier.swift`)
/// in float32, for N tokens per forward, L layers, hidden H, FFN size I, P parameters, T tokens
/// per sequence and `workers` attention workers:
/// - activations kept for the backward pass: N x (H x (8L + 10) + I x (2L + 3)) floats, plus
///   2 x workers x T^2 floats of attention scratch;
/// - training: the weights, their gradients and AdamW's two moments (4P floats), and one more
///   copy of the weights while a checkpoint is written (P);
/// - integrated gradients: alpha steps run as batch rows of `IntegratedGradientsAttributor.tokensPerChunk`
///   (4,096) tokens, at least one sequence, with one gradient buffer (P), and the scores being
///   summed in float64 (a sequence's and the running sum, per target group);
/// - 100 MB for the runtime, SQLite and the data.
/// Measured on the t6_8M shape with `kneuron bench` (2-core AMD EPYC with AVX-512): peak RSS
/// 336 MB for a forward of 8 x 256 tokens (this formula: 371 MB), 377 MB for forward and
/// backward without optimizer state (453 MB), 725 MB for integrated gradients of 1 x 256
/// tokens in 20 steps (748 MB): the estimate errs on the high side, by 3-20%.
public struct MemoryPlan: Sendable, Equatable {
    /// Bytes of the weights, gradients and optimizer state while training.
    public var training: Int64
    /// Bytes of the activations of one training step (`train.batch_size` x `model.max_length` tokens).
    public var trainingActivations: Int64
    /// Bytes of integrated gradients' activations and gradient buffer.
    public var attribution: Int64
    /// Fixed overhead, bytes.
    public var base: Int64 = 100 << 20
    /// The peak: base + the larger of training and attribution.
    public var total: Int64 { Self.bytes(Double(base) + max(Double(training) + Double(trainingActivations), Double(attribution))) }

    /// Activation floats of one forward + backward of `tokens` tokens of sequences of `length`
    /// tokens (in Double: a spec's batch size may be absurd; the result is clamped by `bytes`).
    static func activationFloats(_ c: ESMConfig, tokens: Double, length: Int, workers: Int) -> Double {
        let L = Double(c.numHiddenLayers), H = Double(c.hiddenSize), I = Double(c.intermediateSize)
        return tokens * (H * (8 * L + 10) + I * (2 * L + 3)) + 2 * Double(max(1, workers)) * Double(length) * Double(length)
    }

    /// `x` bytes as an Int64, at most Int64.max.
    static func bytes(_ x: Double) -> Int64 { x >= 9.0e18 ? Int64(9.0e18) : Int64(x.rounded(.up)) }

    /// The plan for `config` under `spec` (`model.max_length`, `train.batch_size`, whether the
    /// spec trains and attributes with integrated gradients).
    public init(config: ESMConfig, spec: PipelineSpec, workers: Int = 2) {
        let P = Double(ParameterLayout(config: config).count)
        let T = spec.model.maxLength
        training = Self.bytes(spec.train.epochs > 0 || spec.sanity.labelRandomization ? 4 * 5 * P : 4 * 2 * P)
        trainingActivations = Self.bytes(4 * Self.activationFloats(config, tokens: Double(spec.train.batchSize) * Double(T), length: T, workers: workers))
        let igTokens = Double(max(IntegratedGradientsAttributor.tokensPerChunk, T))
        // The scores being summed: float64, a sequence's and the running sum, per group (the true
        // class, and with per_class each class too), for the largest granularity.
        let groups = 1.0 + (spec.attribution.targets.contains(.perClass) ? Double(config.numLabels) : 0)
        let scored = spec.attribution.granularity.map { g in
            Double((try? ScoreLayout(config: config, modules: spec.attribution.modules, granularity: g))?.count ?? 0)
        }.max() ?? 0
        let sums = 8 * 2 * scored * groups
        attribution = spec.attribution.methods.contains(.integratedGradients) || spec.attribution.methods.contains(.gradientXActivation)
            ? Self.bytes(4 * (2 * P + Self.activationFloats(config, tokens: igTokens, length: T, workers: workers)) + sums) : Self.bytes(sums)
    }

    /// The memory this process may use, bytes: the smallest cgroup `memory.max` (v2) or
    /// `memory.limit_in_bytes` (v1) on its path, and the machine's `MemTotal`; and the
    /// machine's `MemAvailable` (both from /proc/meminfo). nil values when unknown.
    public static func available() -> (limit: Int64?, available: Int64?) {
        func meminfo(_ key: String) -> Int64? {
            guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8),
                  let line = text.split(separator: "\n").first(where: { $0.hasPrefix(key + ":") }),
                  let kb = Int64(line.split(separator: " ").dropFirst().first ?? "") else { return nil }
            return kb * 1024
        }
        var limit = meminfo("MemTotal")
        func consider(_ path: String) {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8),
                  let v = Int64(text.trimmingCharacters(in: .whitespacesAndNewlines)), v > 0, v < Int64(1) << 60 else { return }
            limit = min(limit ?? v, v)
        }
        if let groups = try? String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8) {
            for line in groups.split(separator: "\n") {
                let parts = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
                guard parts.count == 3 else { continue }
                var path = String(parts[2])
                let v2 = parts[0] == "0" && parts[1].isEmpty
                guard v2 || parts[1].split(separator: ",").contains("memory") else { continue }
                while true {
                    consider(v2 ? "/sys/fs/cgroup\(path)/memory.max" : "/sys/fs/cgroup/memory\(path)/memory.limit_in_bytes")
                    if path == "/" || path.isEmpty { break }
                    path = (path as NSString).deletingLastPathComponent
                }
            }
        }
        return (limit, meminfo("MemAvailable"))
    }

    /// `n` bytes in MB, rounded (one decimal below 10 MB).
    static func mb(_ n: Int64) -> String {
        n < 10 << 20 ? String(format: "%.1f MB", Double(n) / 1_048_576) : "\((n + (1 << 19)) >> 20) MB"
    }

    /// One line: the estimate and its parts (the stages run one after another, so the peak is
    /// the larger of training and integrated gradients, plus the base).
    public var summary: String {
        "about \(Self.mb(total)) at the peak: the larger of training (weights and optimizer \(Self.mb(training)) + activations \(Self.mb(trainingActivations))) "
            + "and integrated gradients (\(Self.mb(attribution))), plus \(Self.mb(base)) base"
    }
}
