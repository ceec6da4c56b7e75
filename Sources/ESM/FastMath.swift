// Vectorisable float math for the kernels: exp, erf and SIMD reductions.
//
// The scalar functions below contain no calls and no branches the compiler cannot
// turn into selects, so a release build vectorises the loops that use them (libm's
// `expf`/`erff` per element would not vectorise).

/// `exp(x)` in float32, Cephes `expf` range reduction and polynomial (about 1 ulp for
/// `x` in [-87, 88]; inputs are clamped to that range, so `exp(-inf)` is ~1e-38, not 0).
@inline(__always)
@usableFromInline
func fastExp(_ x: Float) -> Float {
    var x = x < -87.0 ? -87.0 : x
    x = x > 88.0 ? 88.0 : x
    // Round to nearest by adding and subtracting 1.5 * 2^23 (|x log2 e| < 2^22): unlike
    // `rounded()`, which calls rintf, this stays inside a vectorised loop.
    let shifter: Float = 12_582_912
    let n = (x * 1.44269504088896341 + shifter) - shifter
    let r = x - n * 0.693359375 - n * -2.12194440e-4
    var p: Float = 1.9875691500e-4
    p = p * r + 1.3981999507e-3
    p = p * r + 8.3334519073e-3
    p = p * r + 4.1665795894e-2
    p = p * r + 1.6666665459e-1
    p = p * r + 5.0000001201e-1
    p = p * r * r + r + 1
    let bits = UInt32(bitPattern: Int32(n) &+ 127) &<< 23
    return p * Float(bitPattern: bits)
}

/// `erf(x)` in float32 as a rational function `x P(x^2) / Q(x^2)` on [-4, 4] (clamped
/// outside, where erf is +-1 in float32). Coefficients of Eigen's / XLA's
/// `generic_fast_erf_float`; the test `testErfAccuracy` measures max |error| vs double erf.
@inline(__always)
@usableFromInline
func fastErf(_ x: Float) -> Float {
    var x = x < -4 ? -4 : x
    x = x > 4 ? 4 : x
    let x2 = x * x
    var p: Float = -2.72614225801306e-10
    p = p * x2 + 2.77068142495902e-08
    p = p * x2 + -2.10102402082508e-06
    p = p * x2 + -5.69250639462346e-05
    p = p * x2 + -7.34990630326855e-04
    p = p * x2 + -2.95459980854025e-03
    p = p * x2 + -1.60960333262415e-02
    p = p * x
    var q: Float = -1.45660718464996e-05
    q = q * x2 + -2.13374055278905e-04
    q = q * x2 + -1.68282697438203e-03
    q = q * x2 + -7.37332916720468e-03
    q = q * x2 + -1.42647390514189e-02
    return p / q
}

/// Sum of `n` floats with 16-wide accumulators.
@inline(__always)
func vsum(_ p: UnsafePointer<Float>, _ n: Int) -> Float {
    let raw = UnsafeRawPointer(p)
    var acc = SIMD16<Float>()
    var i = 0
    while i + 16 <= n {
        acc += raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self)
        i += 16
    }
    var s = acc.sum()
    while i < n { s += p[i]; i += 1 }
    return s
}

/// Dot product of `n` floats with 16-wide accumulators.
@inline(__always)
func vdot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
    let ra = UnsafeRawPointer(a), rb = UnsafeRawPointer(b)
    var acc = SIMD16<Float>()
    var i = 0
    while i + 16 <= n {
        acc += ra.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self)
            * rb.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self)
        i += 16
    }
    var s = acc.sum()
    while i < n { s += a[i] * b[i]; i += 1 }
    return s
}

/// Maximum of `n >= 1` floats. Two SIMD4 accumulators with compare-and-select (maps to
/// cmpps/blend on SSE); SIMD16 `pointwiseMax` was lowered element by element through the
/// stack and cost more than the softmax's exponentials.
@inline(__always)
func vmax(_ p: UnsafePointer<Float>, _ n: Int) -> Float {
    let raw = UnsafeRawPointer(p)
    var i = 0
    var m = -Float.greatestFiniteMagnitude
    if n >= 8 {
        var a = raw.loadUnaligned(as: SIMD4<Float>.self)
        var b = raw.loadUnaligned(fromByteOffset: 16, as: SIMD4<Float>.self)
        i = 8
        while i + 8 <= n {
            let x = raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD4<Float>.self)
            let y = raw.loadUnaligned(fromByteOffset: i * 4 + 16, as: SIMD4<Float>.self)
            a.replace(with: x, where: x .> a)
            b.replace(with: y, where: y .> b)
            i += 8
        }
        a.replace(with: b, where: b .> a)
        m = Swift.max(Swift.max(a[0], a[1]), Swift.max(a[2], a[3]))
    }
    while i < n { m = p[i] > m ? p[i] : m; i += 1 }
    return m
}
