import ESM
import Foundation

/// An attribution method: how a score is given to every weight or neuron of the chosen
/// linear maps. Each case is implemented by one `Attributor` (`implementation`); its raw value
/// is the spec and database name.
public enum AttributionMethod: String, Codable, Sendable, CaseIterable, Comparable, CustomStringConvertible {
    /// Activation magnitude (arXiv 2312.10770 section 3.2): weights |w_ij| * mean |x_j|,
    /// neurons mean |y_i| over non-padding positions (`ActivationAttributor`).
    case activation
    /// Integrated gradients (Sundararajan et al. 2017) from the zero baseline: weights along
    /// alpha*W (arXiv 2312.10770 section 3.3), neurons along alpha*activation (Dai et al. 2021)
    /// (`IntegratedGradientsAttributor`).
    case integratedGradients = "integrated_gradients"
    /// Gradient x activation at the model itself (one backward per sequence): w * dF/dw,
    /// y * dF/dy summed over positions (`GradientXActivationAttributor`).
    case gradientXActivation = "gradient_x_activation"

    /// The object that computes this method.
    public var implementation: any Attributor {
        switch self {
        case .activation: ActivationAttributor()
        case .integratedGradients: IntegratedGradientsAttributor()
        case .gradientXActivation: GradientXActivationAttributor()
        }
    }

    /// Whether the method's scores depend on the target class (activation does not).
    public var usesTarget: Bool { self != .activation }

    public static func < (a: Self, b: Self) -> Bool { allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)! }
    /// The raw value.
    public var description: String { rawValue }
}

/// What is scored: every element of the chosen weight matrices (the paper), or every output
/// unit of the chosen linear maps (a neuron: its activation, i.e. its weight row and bias;
/// for `intermediate` exactly Dai et al.'s FFN neuron, after GELU).
public enum Granularity: String, Codable, Sendable, CaseIterable, Comparable, CustomStringConvertible {
    case weight
    case neuron

    public static func < (a: Self, b: Self) -> Bool { allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)! }
    /// The raw value.
    public var description: String { rawValue }
}

/// Which probability the target-dependent methods attribute.
public enum AttributionTarget: String, Codable, Sendable, CaseIterable, Comparable, CustomStringConvertible {
    /// F = P(true class) of each selection sequence; one ranking (the paper).
    case trueClass = "true_class"
    /// For each class c, F = P(c) over the selection sequences of class c: one ranking per class
    /// (per-class knowledge neurons). A sequence's contribution is the same as under
    /// `trueClass`; only the averaging groups differ.
    case perClass = "per_class"

    public static func < (a: Self, b: Self) -> Bool { allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)! }
    /// The raw value.
    public var description: String { rawValue }
}

/// One ranking's identity: method, granularity and target class (nil = the true class of every
/// sequence). The random baseline is not one of these (`SelectStage` draws it per granularity).
public struct RankingKey: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The method.
    public var method: AttributionMethod
    /// What was scored.
    public var granularity: Granularity
    /// nil: F = P(true class) (`AttributionTarget.trueClass`); c: F = P(c) over class-c sequences.
    public var targetClass: Int?

    /// A ranking key from its parts.
    public init(method: AttributionMethod, granularity: Granularity, targetClass: Int? = nil) {
        self.method = method; self.granularity = granularity; self.targetClass = targetClass
    }

    public static func < (a: Self, b: Self) -> Bool {
        (a.granularity, a.method, a.targetClass ?? -1) < (b.granularity, b.method, b.targetClass ?? -1)
    }

    /// `integrated_gradients/neuron` or `integrated_gradients/neuron/class 3`.
    public var description: String {
        "\(method)/\(granularity)" + (targetClass.map { "/class \($0)" } ?? "")
    }
}

/// Errors of the attribution methods.
public enum AttributionError: Error, CustomStringConvertible, Equatable {
    /// Fewer than one Riemann step.
    case invalidSteps(Int)
    /// An empty token sequence.
    case emptySequence
    /// A target class outside `0 ..< classes`.
    case targetOutOfRange(target: Int, classes: Int)
    /// A score layout with no linear map.
    case noModules
    /// A layout that was built for another model shape.
    case layoutMismatch(String)

    /// A one-line message saying what was wrong and what to do.
    public var description: String {
        switch self {
        case .invalidSteps(let s):
            return "integrated gradients needs at least 1 step, got \(s)"
        case .emptySequence:
            return "cannot attribute an empty token sequence; tokenize it with <cls>/<eos>"
        case .targetOutOfRange(let t, let c):
            return "target class \(t) is outside 0..<\(c)"
        case .noModules:
            return "a score layout needs at least one module: query, key, value, attention_output, intermediate, output"
        case .layoutMismatch(let m):
            return "score layout does not fit the model: \(m)"
        }
    }
}
