import ArgumentParser
import Foundation
import Attribution
import ESM
import Pipeline

/// `kneuron bench [--workload W] [--repeat N] [--json]`: times forward, train and integrated
/// gradients on the ESM-2 t6_8M shape (see `BenchWorkload`).
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Time forward, train (forward + backward) and integrated gradients on an ESM-2 shape (default t6_8M), and score storage on any preset's shape.",
        discussion: """
            Random weights, float32, batch 8 x 256 tokens (ig: 1 x 256, 20 steps); --shape, --tokens and --batch change them. Prints median and minimum \
            wall time, GFLOP/s (analytic count) and peak RSS. OpenBLAS reads OPENBLAS_CORETYPE before main(); \
            the core type in effect is printed. --workload storage writes one method's score set of --preset's \
            layout (--modules, --granularity) and two shards' partial sums to a temporary database.
            """)
    enum WorkloadChoice: String, ExpressibleByArgument, CaseIterable { case all, forward, train, ig, sqlite, storage }

    @Option(help: "forward, train, ig, sqlite, storage or all (all = the first four; storage runs alone).") var workload: WorkloadChoice = .all
    @Option(help: "Model shape of the storage workload: \(ESMConfig.presetNames.joined(separator: ", ")).") var preset = "esm2_t12_35M"
    @Option(help: "Model shape of the forward, train and ig workloads: \(ESMConfig.presetNames.joined(separator: ", ")).") var shape = "esm2_t6_8M"
    @Option(help: "Tokens per sequence (with <cls> and <eos>) of the forward, train and ig workloads, 3 ... 1026.") var tokens = 256
    @Option(help: "Sequences per batch of the forward and train workloads.") var batch = 8
    @Option(help: "Riemann steps of the ig workload.") var igSteps = 20
    @Option(name: .customLong("repeat"), help: "Timed repeats after one warm-up.") var repeats = 10
    @Option(parsing: .upToNextOption, help: "Linear maps of the ig workload: query key value attention_output intermediate output.")
    var modules: [String] = LinearModule.attention.map(\.rawValue)
    @Option(help: "Granularity of the ig workload: weight or neuron.") var granularity = Granularity.weight.rawValue
    @Flag(help: "One JSON object per workload and line.") var json = false

    /// `--modules` as types (checked in `validate`).
    var linearModules: [LinearModule] { modules.compactMap(LinearModule.init(rawValue:)) }

    func validate() throws {
        guard igSteps >= 1 else { throw ValidationError("--ig-steps must be at least 1 (got \(igSteps))") }
        guard repeats >= 1 else { throw ValidationError("--repeat must be at least 1 (got \(repeats))") }
        for m in modules where LinearModule(rawValue: m) == nil {
            throw ValidationError("--modules: unknown module '\(m)'; choose from \(LinearModule.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard !modules.isEmpty else { throw ValidationError("--modules needs at least one module") }
        guard Granularity(rawValue: granularity) != nil else { throw ValidationError("--granularity must be weight or neuron (got '\(granularity)')") }
        guard ESMConfig.presetNames.contains(shape) else {
            throw ValidationError("--shape: unknown model shape '\(shape)'; choose from \(ESMConfig.presetNames.joined(separator: ", "))")
        }
        guard (3 ... 1026).contains(tokens) else { throw ValidationError("--tokens must be 3 ... 1026 (ESM-2's positions), got \(tokens)") }
        guard batch >= 1 else { throw ValidationError("--batch must be at least 1 (got \(batch))") }
        guard ESMConfig.presetNames.contains(preset) else {
            throw ValidationError("--preset: unknown model shape '\(preset)'; choose from \(ESMConfig.presetNames.joined(separator: ", "))")
        }
    }

    /// The storage workload: one method's score set and two shards of `--preset`'s layout.
    func runStorage() throws {
        let r = try Benchmark.storage(preset: preset, modules: linearModules, granularity: Granularity(rawValue: granularity)!)
        if json {
            let object: [String: Any] = [
                "workload": "storage", "preset": r.preset, "modules": linearModules.map(\.rawValue), "granularity": granularity,
                "scores": r.scores, "write_s": r.writeSeconds, "bytes": r.bytes, "bytes_per_score": Double(r.bytes) / Double(r.scores),
                "read_s": r.readSeconds, "lookup_ms": r.lookupMilliseconds, "top10_ms": r.topMilliseconds,
                "shard_commit_s": r.shardSeconds, "shard_bytes_waiting": r.shardBytes.waiting, "shard_bytes_total": r.shardBytes.total,
                "peak_rss_mb": Double(r.peakRSSBytes) / 1_048_576,
            ]
            print(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self))
        } else {
            print("storage of one method's scores: \(r.preset), \(linearModules.map(\.rawValue).joined(separator: ", ")) at \(granularity) granularity, \(r.scores) scores")
            print(String(format: "  write %.2f s, %.1f MB (%.2f bytes a score); read back %.2f s", r.writeSeconds, Double(r.bytes) / 1e6,
                         Double(r.bytes) / Double(r.scores), r.readSeconds))
            print(String(format: "  SQL: one score from all_scores %.2f ms (median of 20), top 10 from neuron_scores %.2f ms", r.lookupMilliseconds, r.topMilliseconds))
            print(String(format: "  shard sums (float64): commit shard 1 %.2f s (stored: %.1f MB), shard 0 %.2f s (both added: running total %.1f MB)",
                         r.shardSeconds[0], Double(r.shardBytes.waiting) / 1e6, r.shardSeconds[1], Double(r.shardBytes.total) / 1e6))
            print(String(format: "  peak RSS %.0f MB", Double(r.peakRSSBytes) / 1_048_576))
        }
    }

    func run() throws {
        if workload == .storage { return try runStorage() }
        let workloads = workload == .all ? BenchWorkload.allCases : [BenchWorkload(rawValue: workload.rawValue)!]
        let coreType = ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] ?? "auto"
        // The model's largest GEMM: the FFN intermediate projection of the train batch,
        // (batch*tokens) x hidden -> intermediate (t6_8M default: 2048 x 320 -> 1280), on the same
        // 2 threads and BLAS as the kernels.
        let setup = BenchSetup(shape: shape, tokens: tokens, batch: batch)
        let config = try ESMConfig.preset(shape, numLabels: 7)
        let (m, n, k) = (batch * tokens, config.intermediateSize, config.hiddenSize)
        let sgemm = sgemmThroughput(m: m, n: n, k: k, workers: 2)
        if json {
            let data = try JSONSerialization.data(withJSONObject: ["workload": "sgemm_\(m)x\(n)x\(k)", "gflops": sgemm,
                                                                   "openblas_coretype": coreType, "shape": shape] as [String: Any],
                                                  options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            print("OpenBLAS core type: \(coreType); threads: kernels' own (2 max), BLAS single-threaded")
            print("shape \(shape): \(config.numHiddenLayers) layers, hidden \(config.hiddenSize), FFN \(config.intermediateSize); forward/train \(batch) x \(tokens) tokens, ig 1 x \(tokens)")
            print(String(format: "sgemm %dx%dx%d (largest GEMM of the model): %.1f GFLOP/s", m, n, k, sgemm))
        }
        for w in workloads {
            let r = try Benchmark.run(w, repeats: repeats, igSteps: igSteps, modules: linearModules, granularity: Granularity(rawValue: granularity)!,
                                      setup: setup)
            if json {
                let object: [String: Any] = [
                    "workload": w.rawValue, "median_ms": r.medianMilliseconds, "min_ms": r.minMilliseconds,
                    "gflops": r.gflopsPerSecond.isFinite ? r.gflopsPerSecond as Any : NSNull(), "peak_rss_mb": Double(r.peakRSSBytes) / 1_048_576,
                    "repeats": r.milliseconds.count, "openblas_coretype": coreType, "ig_steps": igSteps,
                    "modules": linearModules.map(\.rawValue), "granularity": granularity,
                    "shape": shape, "tokens": tokens, "batch": w == .ig ? 1 : batch,
                ]
                let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
                print(String(decoding: data, as: UTF8.self))
            } else {
                let rate = r.gflopsPerSecond.isFinite ? String(format: "%6.1f GFLOP/s", r.gflopsPerSecond) : "     - GFLOP/s"
                print(String(format: "%-8@ median %8.1f ms  min %8.1f ms  %@  peak RSS %6.0f MB  (%d repeats)",
                             w.rawValue as NSString, r.medianMilliseconds, r.minMilliseconds, rate as NSString,
                             Double(r.peakRSSBytes) / 1_048_576, r.milliseconds.count))
            }
        }
    }
}
