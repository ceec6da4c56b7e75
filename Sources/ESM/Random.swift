import Foundation

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny portable PRNG whose stream depends only on
/// the seed, identical on every machine and Swift version (Swift's own generators make no
/// such promise). Used for weight initialisation and for shuffling in training.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    /// The 64-bit state.
    public var state: UInt64

    /// A generator seeded with `seed`.
    public init(seed: UInt64) { state = seed }

    /// The next 64 random bits.
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A uniform double in [0, 1) with 53 random bits.
    public mutating func nextUnitDouble() -> Double {
        Double(next() >> 11) * 0x1.0p-53
    }

    /// A uniform integer in `0 ..< bound` (Lemire's multiply-high; bias < 2^-64 * bound).
    /// Returns 0 when `bound <= 0`.
    public mutating func nextIndex(below bound: Int) -> Int {
        if bound <= 0 { return 0 }
        return Int(next().multipliedFullWidth(by: UInt64(bound)).high)
    }

    /// Fisher-Yates shuffle of `a` in place, driven only by this generator (portable, unlike
    /// `shuffle(using:)`, whose algorithm Swift does not specify).
    public mutating func shuffle<T>(_ a: inout [T]) {
        guard a.count > 1 else { return }
        for i in stride(from: a.count - 1, to: 0, by: -1) {
            a.swapAt(i, nextIndex(below: i + 1))
        }
    }

    /// A pair of independent standard normal samples (Box-Muller).
    public mutating func nextNormalPair() -> (Double, Double) {
        let u1 = Double((next() >> 11) + 1) * 0x1.0p-53   // (0, 1]
        let u2 = nextUnitDouble()
        let r = (-2 * Foundation.log(u1)).squareRoot()
        return (r * Foundation.cos(2 * Double.pi * u2), r * Foundation.sin(2 * Double.pi * u2))
    }

    /// Fills `out` with N(0, std^2) samples.
    public mutating func fillNormal(_ out: UnsafeMutableBufferPointer<Float>, std: Double) {
        var i = 0
        while i < out.count {
            let (a, b) = nextNormalPair()
            out[i] = Float(a * std)
            if i + 1 < out.count { out[i + 1] = Float(b * std) }
            i += 2
        }
    }
}
