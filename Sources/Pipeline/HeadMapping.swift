import ESM
import Foundation
import ProteinData
import Store

/// `model.head`: what the train stage does with a checkpoint's classifier head.
public enum HeadPolicy: String, Codable, Sendable, CaseIterable {
    /// Keep the stored head, its outputs mapped to the data's classes by EC label (`id2label`).
    case keep
    /// Draw a new head for the data's classes (seeded by `model.seed`), whatever is stored.
    case reinit
}

/// How the run's classifier head is obtained: the decision of `HeadMapping.decide`, printed by
/// the train stage and recorded in `model_head`.
public enum HeadDecision: Equatable, Sendable {
    /// A seeded preset: every weight, the head included, is drawn fresh.
    case preset(String)
    /// The checkpoint has no classifier (EsmForMaskedLM / EsmModel): the head is drawn with the seed.
    case initialised
    /// `model.head: reinit`: a stored head is replaced by one drawn with the seed.
    case reinitialised
    /// The stored head is kept; the run's class `i` is the stored output `order[i]`, whose
    /// `id2label` text is `labels[i]`. `order` is the identity for `kept`, a permutation for
    /// `reordered`.
    case kept(order: [Int], labels: [String])

    /// The `model_head.decision` value.
    public var name: String {
        switch self {
        case .preset: return "preset"
        case .initialised: return "initialised"
        case .reinitialised: return "reinitialised"
        case .kept(let order, _): return order == Array(order.indices) ? "kept" : "reordered"
        }
    }

    /// True when the stored head's values are loaded.
    public var keepsHead: Bool { if case .kept = self { return true } else { return false } }
}

/// Maps a checkpoint's classifier outputs to the run's classes by label, so a head fine-tuned
/// elsewhere is never run with another class order (HF `id2label`, see transformers'
/// `PretrainedConfig`).
public enum HeadMapping {
    /// The EC number a checkpoint label names: the label's first
    /// word (an optional `EC`/`EC:` prefix allowed), as kneuron writes them (`1.-.-.-
    /// Oxidoreductases`) and as label files have them (`3.4.-.-`, `3.4`); at `level` 1 also an
    /// ExPASy class name alone (`Hydrolases`, any case). nil for anything else (`LABEL_0`), and
    /// for a label whose EC and class name disagree (`1.-.-.- Hydrolases`).
    public static func ecLabel(_ text: String, level: Int) -> ECNumber? {
        let words = text.split(whereSeparator: { $0.isWhitespace }).map(String.init)
        guard let first = words.first else { return nil }
        let prefixed = (first.uppercased() == "EC" || first.uppercased() == "EC:") && words.count > 1
        if let ec = try? ECNumber(prefixed ? first + " " + words[1] : first) {
            // "1.-.-.- Hydrolases" contradicts itself: neither is trusted.
            let name = words.dropFirst(prefixed ? 2 : 1).joined(separator: " ").lowercased()
            if let (k, _) = ECClassNames.builtinClassNames.first(where: { $0.value.lowercased() == name }), ec.ecClass != k { return nil }
            return ec
        }
        if level == 1 {
            let name = text.trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
            if let (k, _) = ECClassNames.builtinClassNames.first(where: { $0.value.lowercased() == name }) { return try? ECNumber("\(k)") }
        }
        return nil
    }

    /// Decides what to do with the checkpoint `path`'s head (its `contents`, from
    /// `Checkpoint.inspect`) for the run's `classes` at `level` under `policy` (nil = keep
    /// when the labels match, initialise when there is no head).
    ///
    /// A stored head is kept only when its `id2label` names every run class exactly once and
    /// nothing else (compared as EC numbers, `ecLabel(_:level:)`); its outputs are then
    /// reordered to the run's class order.
    /// - Throws: `PipelineError.headMismatch` naming both label lists and what to change,
    ///   when the labels do not match (or are not EC labels) and `policy` is not `reinit`, or
    ///   when `policy` is `keep` and the checkpoint has no classifier.
    public static func decide(path: String, contents: Checkpoint.Contents, classes: [ClassRecord], level: Int,
                              policy: HeadPolicy?) throws -> HeadDecision {
        if policy == .reinit { return contents.hasClassifier ? .reinitialised : .initialised }
        guard contents.hasClassifier else {
            if policy == .keep {
                let kind = contents.architectures.first ?? "EsmModel or EsmForMaskedLM"
                throw PipelineError.headMismatch(checkpoint: path, detail: "model.head is keep but the checkpoint (\(kind)) has no classifier head to keep; remove model.head (a new head is then initialised with model.seed) or give a checkpoint fine-tuned for sequence classification")
            }
            return .initialised
        }
        let dataList = classes.map { c in c.name.map { "\(c.ecLabel) \($0)" } ?? c.ecLabel }.joined(separator: ", ")
        let fix = "set model.head: reinit to train a new head for the data's classes, or choose the data's classes with `classes:` in the spec"
        guard let labels = contents.headLabels else {
            throw PipelineError.headMismatch(checkpoint: path, detail: "its classifier has \(contents.config.numLabels) outputs but config.json has no id2label for each of them, so they cannot be matched to the data's \(classes.count) classes (\(dataList)); add id2label with the EC label of each output, or \(fix)")
        }
        let stored = labels.enumerated().map { "\($0.offset): \($0.element)" }.joined(separator: ", ")
        var byEC: [ECNumber: Int] = [:]
        var unreadable: [String] = []
        var repeated: [String] = []
        for (i, text) in labels.enumerated() {
            guard let ec = ecLabel(text, level: level) else { unreadable.append("\(i): \(text)"); continue }
            if byEC[ec] != nil { repeated.append("\(i): \(text)") } else { byEC[ec] = i }
        }
        if !unreadable.isEmpty || !repeated.isEmpty {
            let what = unreadable.isEmpty ? "" : "labels that are not EC numbers or class names (\(unreadable.joined(separator: ", ")))"
            let twice = repeated.isEmpty ? "" : "labels naming an EC a second time (\(repeated.joined(separator: ", ")))"
            throw PipelineError.headMismatch(checkpoint: path, detail: "its classifier's id2label has \([what, twice].filter { !$0.isEmpty }.joined(separator: " and ")), so its outputs cannot be matched to the data's classes (\(dataList)); \(fix)")
        }
        var order: [Int] = []
        var missing: [String] = []
        for c in classes {
            guard let ec = try? ECNumber(c.ecLabel), let i = byEC[ec] else { missing.append(c.ecLabel); continue }
            order.append(i)
        }
        let extra = labels.indices.filter { !order.contains($0) }.map { "\($0): \(labels[$0])" }
        guard missing.isEmpty && extra.isEmpty else {
            var parts: [String] = []
            if !missing.isEmpty { parts.append("the data's classes \(missing.joined(separator: ", ")) are not among its outputs") }
            if !extra.isEmpty { parts.append("its outputs \(extra.joined(separator: ", ")) are not among the data's classes") }
            throw PipelineError.headMismatch(checkpoint: path, detail: "its classifier predicts [\(stored)] but the data has the classes [\(dataList)] at label_level \(level): \(parts.joined(separator: "; ")); \(fix)")
        }
        return .kept(order: order, labels: order.map { labels[$0] })
    }

    /// The sentence the train stage prints and records for `decision` on `classes`.
    public static func describe(_ decision: HeadDecision, classes: [ClassRecord], seed: UInt64) -> String {
        switch decision {
        case .preset(let name):
            return "preset \(name): every weight drawn with seed \(seed), the head for the data's \(classes.count) classes"
        case .initialised:
            return "the checkpoint has no classifier head: classifier.dense and classifier.out_proj initialised for the data's \(classes.count) classes with seed \(seed)"
        case .reinitialised:
            return "model.head: reinit: the stored classifier head is replaced by one for the data's \(classes.count) classes, drawn with seed \(seed)"
        case .kept(let order, let labels):
            if order == Array(order.indices) {
                return "the stored classifier head is kept: its \(order.count) outputs are the data's classes in the same order (id2label matches)"
            }
            let moves = zip(classes, zip(order, labels)).map { c, o in "\(c.ecLabel) <- output \(o.0) (\(o.1))" }
            return "the stored classifier head is kept, its outputs reordered to the data's class order by their id2label: " + moves.joined(separator: ", ")
        }
    }
}
