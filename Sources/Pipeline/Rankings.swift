import Attribution
import ESM
import Foundation
import Store

/// The non-attributed rows of `score_sets`, `selections` and `evaluations` (the database
/// boundary's only method names besides `AttributionMethod`'s).
enum Baseline {
    /// Uniform random scores (`method = 'random'`), one set per seed and granularity.
    static let random = "random"
    /// The unpruned model's evaluation (`method = 'full'`, granularity `none`, fraction 1).
    static let full = "full"
    /// The full model's granularity.
    static let noGranularity = "none"

    /// The random baseline's scores for seed `seed`: `count` uniform draws in [0, 1) from
    /// SplitMix64 (a uniformly random ranking). Not stored (only its best ranks are): select
    /// and evaluate regenerate it.
    static func randomScores(count: Int, seed: Int) -> [Float] {
        var rng = SplitMix64(seed: UInt64(bitPattern: Int64(seed)))
        return (0 ..< count).map { _ in Float(rng.nextUnitDouble()) }
    }
}

extension ScoreLayout {
    /// The layout as the store records it (`score_blocks`).
    var stored: ScoreSetLayout {
        ScoreSetLayout(modules: modules.map(\.rawValue), layers: layers,
                       blocks: blocks.map { .init(layer: $0.site.layer, module: $0.site.module.rawValue, rows: $0.rows, cols: $0.cols, offset: $0.offset) })
    }
}

extension RankingKey {
    /// The database id of this ranking (seed 0; target_class -1 for the true class).
    var stored: RankingID {
        RankingID(method: method.rawValue, granularity: granularity.rawValue, targetClass: targetClass ?? -1, seed: 0)
    }
}

extension AttributionSpec {
    /// One score layout per requested granularity, over the requested modules of `config`.
    /// - Throws: `AttributionError.noModules` (the decoder refuses an empty list first).
    func layouts(_ config: ESMConfig) throws -> [Granularity: ScoreLayout] {
        var out: [Granularity: ScoreLayout] = [:]
        for g in granularity { out[g] = try ScoreLayout(config: config, modules: modules, granularity: g) }
        return out
    }

    /// Whether shard sums are kept per class (needed by the per_class target).
    var groupsByClass: Bool { targets.contains(.perClass) }

    /// The (method, granularity) pairs the attribute stage computes, in run order.
    var jobs: [(method: AttributionMethod, granularity: Granularity)] {
        granularity.sorted().flatMap { g in methods.map { ($0, g) } }
    }
}
