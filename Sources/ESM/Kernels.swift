// Hand-written forward and backward kernels of the ESM-2 classifier, llm.c style.
//
// Notation (used in every shape comment of this module):
//   B  batch size (rows)            T  tokens per row (longest row, right-padded)
//   N  = B*T token rows             H  hidden size           NH heads    HD = H/NH
//   I  intermediate (FFN) size      C  classes               V  vocabulary size
//   len[b]  non-pad tokens of row b (incl. <cls>/<eos>)
// Every op is a pair `xForward(out, inp, ...)` / `xBackward(dinp, dweight, ..., dout, inp, ...)`.
// Outputs come first; backward kernels ACCUMULATE (+=) into every gradient they receive,
// so callers zero gradient buffers once. Matrices are row-major; Linear weights have
// the PyTorch shape (out, in). Matrix products go through OpenBLAS `cblas_sgemm`.
// Formulas follow HuggingFace `modeling_esm.py` (REFERENCE.md section 2).

import CBLAS
import Foundation

typealias FloatPtr = UnsafeMutablePointer<Float>
typealias ConstFloatPtr = UnsafePointer<Float>

// MARK: - sgemm helpers (row-major)

/// C(m,n) = alpha * op(A) op(B) + beta * C, row-major with leading dimensions.
@inline(__always)
func sgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
           a: ConstFloatPtr, lda: Int, b: ConstFloatPtr, ldb: Int, beta: Float,
           c: FloatPtr, ldc: Int) {
    if m == 0 || n == 0 { return }
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

// MARK: - token embedding with token dropout

/// out (B,T,H) = token-dropout embeddings (HF `EsmEmbeddings.forward`): row `wte[tokens[b,t]]`
/// times `rowScale[b]`; rows of `<mask>` (when `zeroMask`), padding (`t >= len[b]`) and
/// out-of-vocabulary ids are zero. wte (V,H), tokens (B,T), lengths (B), rowScale (B).
func embeddingForward(_ out: FloatPtr, tokens: UnsafePointer<Int32>, lengths: UnsafePointer<Int>,
                      wte: ConstFloatPtr, rowScale: ConstFloatPtr, maskToken: Int32, zeroMask: Bool,
                      B: Int, T: Int, H: Int, V: Int) {
    for b in 0 ..< B {
        let s = rowScale[b]
        for t in 0 ..< T {
            let o = out + (b * T + t) * H
            let tok = tokens[b * T + t]
            if t >= lengths[b] || tok < 0 || Int(tok) >= V || (zeroMask && tok == maskToken) {
                o.update(repeating: 0, count: H)
                continue
            }
            let w = wte + Int(tok) * H
            for i in 0 ..< H { o[i] = w[i] * s }
        }
    }
}

/// dwte (V,H) += scatter of dout (B,T,H) * rowScale[b] onto the token rows that were used.
func embeddingBackward(dwte: FloatPtr, dout: ConstFloatPtr, tokens: UnsafePointer<Int32>,
                       lengths: UnsafePointer<Int>, rowScale: ConstFloatPtr, maskToken: Int32,
                       zeroMask: Bool, B: Int, T: Int, H: Int, V: Int) {
    for b in 0 ..< B {
        let s = rowScale[b]
        for t in 0 ..< min(T, lengths[b]) {
            let tok = tokens[b * T + t]
            if tok < 0 || Int(tok) >= V || (zeroMask && tok == maskToken) { continue }
            let d = dout + (b * T + t) * H
            let w = dwte + Int(tok) * H
            for i in 0 ..< H { w[i] += d[i] * s }
        }
    }
}

// MARK: - LayerNorm

/// out (N,H) = (inp - mean) * rstd * weight + bias; caches mean (N), rstd (N).
func layerNormForward(_ out: FloatPtr, mean: FloatPtr, rstd: FloatPtr, inp: ConstFloatPtr,
                      weight: ConstFloatPtr, bias: ConstFloatPtr, N: Int, H: Int, eps: Float) {
    let invH = 1 / Float(H)
    for n in 0 ..< N {
        let x = inp + n * H
        let o = out + n * H
        let m = vsum(x, H) * invH
        for i in 0 ..< H { o[i] = x[i] - m }          // centred, reused for the variance
        let v = vdot(o, o, H) * invH
        let r = 1 / (v + eps).squareRoot()
        for i in 0 ..< H { o[i] = o[i] * r * weight[i] + bias[i] }
        mean[n] = m
        rstd[n] = r
    }
}

/// dinp (N,H) += LayerNorm input gradient; dweight (H) += sum norm*dout; dbias (H) += sum dout.
/// `scratch` holds 2H floats.
func layerNormBackward(dinp: FloatPtr, dweight: FloatPtr, dbias: FloatPtr, dout: ConstFloatPtr,
                       inp: ConstFloatPtr, weight: ConstFloatPtr, mean: ConstFloatPtr, rstd: ConstFloatPtr,
                       N: Int, H: Int, scratch: FloatPtr) {
    let norm = scratch, dnorm = scratch + H
    let invH = 1 / Float(H)
    for n in 0 ..< N {
        let x = inp + n * H, d = dout + n * H, dx = dinp + n * H
        let m = mean[n], r = rstd[n]
        for i in 0 ..< H {
            norm[i] = (x[i] - m) * r
            dnorm[i] = weight[i] * d[i]
            dbias[i] += d[i]
            dweight[i] += norm[i] * d[i]
        }
        let dnormMean = vsum(dnorm, H) * invH
        let dnormNormMean = vdot(dnorm, norm, H) * invH
        for i in 0 ..< H { dx[i] += (dnorm[i] - dnormMean - norm[i] * dnormNormMean) * r }
    }
}

// MARK: - Linear

/// Below this many multiply-adds a product runs on one thread (dispatch costs more than it saves).
let parallelWorkThreshold = 1 << 18

/// Splits `0 ..< count` into `parts` contiguous ranges (the first ones one longer).
@inline(__always)
func chunk(_ count: Int, parts: Int, index: Int) -> Range<Int> {
    let base = count / parts, extra = count % parts
    let lo = index * base + min(index, extra)
    return lo ..< lo + base + (index < extra ? 1 : 0)
}

/// out (N,OUT) = inp (N,IN) W^T + bias, with W (OUT,IN). With `rowScale` (one factor per
/// block of `rowsPerScale` rows, i.e. per batch row), block g uses `rowScale[g] * W`
/// (the weight scaled, not the bias): the integrated-gradients path.
/// Rows are split over `workers` threads, each calling single-threaded BLAS on its slice
/// (the result does not depend on `workers`: every output element is one dot product).
func linearForward(_ out: FloatPtr, inp: ConstFloatPtr, weight: ConstFloatPtr, bias: ConstFloatPtr?,
                   N: Int, IN: Int, OUT: Int, rowScale: ConstFloatPtr? = nil, rowsPerScale: Int = 1,
                   workers: Int = 1) {
    let parts = N * IN * OUT >= parallelWorkThreshold ? max(1, min(workers, N)) : 1
    parallelFor(parts, workers: parts) { _, part in
        let rows = chunk(N, parts: parts, index: part)
        if rows.isEmpty { return }
        sgemm(transA: false, transB: true, m: rows.count, n: OUT, k: IN, a: inp + rows.lowerBound * IN, lda: IN,
              b: weight, ldb: IN, beta: 0, c: out + rows.lowerBound * OUT, ldc: OUT)
        for n in rows {
            let o = out + n * OUT
            if let rowScale {
                let s = rowScale[n / rowsPerScale]
                for j in 0 ..< OUT { o[j] *= s }
            }
            if let bias {
                for j in 0 ..< OUT { o[j] += bias[j] }
            }
        }
    }
}

/// dinp (N,IN) += dout W'; dweight (OUT,IN) += dout'^T inp; dbias (OUT) += column sums of dout,
/// where W' = rowScale*W and dout' = rowScale*dout per block when `rowScale` is given
/// (then `scratch` must hold N*OUT floats). dout (N,OUT). A nil `dinp`, `dweight` or `dbias`
/// is not computed (input-gradient-only passes skip the weight product).
/// `dinp` is split over `workers` threads by rows of N and `dweight` by rows of OUT, so every
/// output element is summed in the same order whatever `workers` is.
func linearBackward(dinp: FloatPtr?, dweight: FloatPtr?, dbias: FloatPtr?, dout: ConstFloatPtr,
                    inp: ConstFloatPtr, weight: ConstFloatPtr, N: Int, IN: Int, OUT: Int,
                    rowScale: ConstFloatPtr? = nil, rowsPerScale: Int = 1, scratch: FloatPtr? = nil,
                    workers: Int = 1) {
    if let dbias {
        for n in 0 ..< N {
            let d = dout + n * OUT
            for j in 0 ..< OUT { dbias[j] += d[j] }
        }
    }
    var g = dout
    if let rowScale, let scratch {
        for n in 0 ..< N {
            let s = rowScale[n / rowsPerScale]
            let d = dout + n * OUT, o = scratch + n * OUT
            for j in 0 ..< OUT { o[j] = d[j] * s }
        }
        g = ConstFloatPtr(scratch)
    }
    let parts = N * IN * OUT >= parallelWorkThreshold ? max(1, workers) : 1
    parallelFor(parts, workers: parts) { _, part in
        if let dinp {
            let rows = chunk(N, parts: parts, index: part)
            if !rows.isEmpty {
                sgemm(transA: false, transB: false, m: rows.count, n: IN, k: OUT, a: g + rows.lowerBound * OUT, lda: OUT,
                      b: weight, ldb: IN, beta: 1, c: dinp + rows.lowerBound * IN, ldc: IN)
            }
        }
        let outs = chunk(OUT, parts: parts, index: part)
        if let dweight, !outs.isEmpty {
            sgemm(transA: true, transB: false, m: outs.count, n: IN, k: N, a: g + outs.lowerBound, lda: OUT,
                  b: inp, ldb: IN, beta: 1, c: dweight + outs.lowerBound * IN, ldc: IN)
        }
    }
}

// MARK: - per-row scale of an activation (integrated gradients over FFN neurons)

/// x (B, rowLength) *= scale[b] for every row b, in place: the integrated-gradients path
/// alpha_b * a of an activation a (Dai et al. 2021, arXiv 2104.08696 section 3.1).
/// OpenBLAS `sscal` per row.
func rowScaleForward(_ x: FloatPtr, scale: ConstFloatPtr, B: Int, rowLength: Int) {
    for b in 0 ..< B { cblas_sscal(Int32(rowLength), scale[b], x + b * rowLength, 1) }
}

/// dx (B, rowLength) *= scale[b], in place: the backward of `rowScaleForward`
/// (d(alpha a)/da = alpha), turning dL/d(alpha a) into dL/da.
func rowScaleBackward(_ dx: FloatPtr, scale: ConstFloatPtr, B: Int, rowLength: Int) {
    rowScaleForward(dx, scale: scale, B: B, rowLength: rowLength)
}

// MARK: - GELU (exact erf form)

/// out (n) = x * 0.5 * (1 + erf(x / sqrt(2))) (HF `gelu`).
func geluForward(_ out: FloatPtr, inp: ConstFloatPtr, count: Int) {
    let invSqrt2: Float = 0.70710678118654752
    for i in 0 ..< count {
        let x = inp[i]
        out[i] = x * 0.5 * (1 + fastErf(x * invSqrt2))
    }
}

/// dinp (n) += dout * (Phi(x) + x phi(x)).
func geluBackward(dinp: FloatPtr, inp: ConstFloatPtr, dout: ConstFloatPtr, count: Int) {
    let invSqrt2: Float = 0.70710678118654752
    let invSqrt2Pi: Float = 0.39894228040143268
    for i in 0 ..< count {
        let x = inp[i]
        let cdf = 0.5 * (1 + fastErf(x * invSqrt2))
        let pdf = invSqrt2Pi * fastExp(-0.5 * x * x)
        dinp[i] += dout[i] * (cdf + x * pdf)
    }
}

// MARK: - rotary position embedding

/// cos, sin (T, HD/2) of `freqs = t * inv_freq`, `inv_freq = 1 / 10000^(2i/HD)` (float32 as torch).
func rotaryTables(cos: FloatPtr, sin: FloatPtr, T: Int, HD: Int) {
    let half = HD / 2
    for i in 0 ..< half {
        let invFreq = Float(1) / powf(10000, Float(2 * i) / Float(HD))
        for t in 0 ..< T {
            let f = Float(t) * invFreq
            cos[t * half + i] = Float(Foundation.cos(Double(f)))
            sin[t * half + i] = Float(Foundation.sin(Double(f)))
        }
    }
}

/// out (B,T,NH,HD) = scale * (x cos + rotate_half(x) sin), rotate_half(x) = cat(-x2, x1)
/// (HF `apply_rotary_pos_emb`; `scale` = HD^-0.5 for the query, 1 for the key). inp (B,T,NH,HD).
func rotaryForward(_ out: FloatPtr, inp: ConstFloatPtr, cos: ConstFloatPtr, sin: ConstFloatPtr,
                   scale: Float, B: Int, T: Int, NH: Int, HD: Int) {
    let half = HD / 2
    for b in 0 ..< B {
        for t in 0 ..< T {
            let c = cos + t * half, s = sin + t * half
            for h in 0 ..< NH {
                let base = ((b * T + t) * NH + h) * HD
                let x = inp + base, o = out + base
                for i in 0 ..< half {
                    let x1 = x[i], x2 = x[i + half]
                    o[i] = (x1 * c[i] - x2 * s[i]) * scale
                    o[i + half] = (x2 * c[i] + x1 * s[i]) * scale
                }
            }
        }
    }
}

/// dinp (B,T,NH,HD) += R^T dout * scale (the rotation is orthogonal, so its transpose).
func rotaryBackward(dinp: FloatPtr, dout: ConstFloatPtr, cos: ConstFloatPtr, sin: ConstFloatPtr,
                    scale: Float, B: Int, T: Int, NH: Int, HD: Int) {
    let half = HD / 2
    for b in 0 ..< B {
        for t in 0 ..< T {
            let c = cos + t * half, s = sin + t * half
            for h in 0 ..< NH {
                let base = ((b * T + t) * NH + h) * HD
                let d = dout + base, dx = dinp + base
                for i in 0 ..< half {
                    let d1 = d[i], d2 = d[i + half]
                    dx[i] += (d1 * c[i] + d2 * s[i]) * scale
                    dx[i + half] += (d2 * c[i] - d1 * s[i]) * scale
                }
            }
        }
    }
}

// MARK: - softmax rows

/// In place: each of `rows` rows (stride `ld`) of the first `n` columns becomes its softmax.
@inline(__always)
func softmaxRows(_ p: FloatPtr, rows: Int, n: Int, ld: Int) {
    for r in 0 ..< rows {
        let row = p + r * ld
        let m = vmax(row, n)
        for j in 0 ..< n { row[j] = fastExp(row[j] - m) }
        let inv = 1 / vsum(row, n)
        for j in 0 ..< n { row[j] *= inv }
    }
}

// MARK: - multi-head self-attention with padded keys

/// Self-attention of one (row b, head h): `out[:, h] = softmax(q k^T + mask) v`, q already
/// scaled by HD^-0.5 and rotated. Keys `j >= len` are masked: HF adds finfo.min, whose exp
/// is exactly 0 in float32, so they are simply left out. All T query rows are computed
/// (padding queries too, as HF does). q, k, v, out are views (T,HD) with leading dim H;
/// `att` scratch (T,T).
func attentionHeadForward(_ out: FloatPtr, q: ConstFloatPtr, k: ConstFloatPtr, v: ConstFloatPtr,
                          len: Int, T: Int, H: Int, HD: Int, att: FloatPtr) {
    let L = max(1, min(len, T))
    sgemm(transA: false, transB: true, m: T, n: L, k: HD, a: q, lda: H, b: k, ldb: H, beta: 0, c: att, ldc: L)
    softmaxRows(att, rows: T, n: L, ld: L)
    sgemm(transA: false, transB: false, m: T, n: HD, k: L, a: att, lda: L, b: v, ldb: H, beta: 0, c: out, ldc: H)
}

/// Backward of `attentionHeadForward`: dq, dk, dv (views (T,HD), leading dim H) += gradients
/// from dout (T,HD). The attention matrix is recomputed from q, k (flash-attention style, no
/// (B,NH,T,T) cache). `att`, `datt` scratch (T,T) each.
func attentionHeadBackward(dq: FloatPtr, dk: FloatPtr, dv: FloatPtr, dout: ConstFloatPtr,
                           q: ConstFloatPtr, k: ConstFloatPtr, v: ConstFloatPtr,
                           len: Int, T: Int, H: Int, HD: Int, att: FloatPtr, datt: FloatPtr) {
    let L = max(1, min(len, T))
    sgemm(transA: false, transB: true, m: T, n: L, k: HD, a: q, lda: H, b: k, ldb: H, beta: 0, c: att, ldc: L)
    softmaxRows(att, rows: T, n: L, ld: L)
    // dP (T,L) = dO V^T ; dV (L,HD) += P^T dO
    sgemm(transA: false, transB: true, m: T, n: L, k: HD, a: dout, lda: H, b: v, ldb: H, beta: 0, c: datt, ldc: L)
    sgemm(transA: true, transB: false, m: L, n: HD, k: T, a: att, lda: L, b: dout, ldb: H, beta: 1, c: dv, ldc: H)
    // dS = P * (dP - rowsum(P * dP))
    for i in 0 ..< T {
        let p = att + i * L, d = datt + i * L
        let s = vdot(p, d, L)
        for j in 0 ..< L { d[j] = p[j] * (d[j] - s) }
    }
    // dQ (T,HD) += dS K ; dK (L,HD) += dS^T Q
    sgemm(transA: false, transB: false, m: T, n: HD, k: L, a: datt, lda: L, b: k, ldb: H, beta: 1, c: dq, ldc: H)
    sgemm(transA: true, transB: false, m: L, n: HD, k: T, a: datt, lda: L, b: q, ldb: H, beta: 1, c: dk, ldc: H)
}

/// out (B,T,H) = multi-head attention of q, k, v (B,T,H) with padded keys masked per `lengths`.
/// Work is split over `workers` threads by (row, head); `scratch` holds workers * 2*T*T floats.
func attentionForward(_ out: FloatPtr, q: ConstFloatPtr, k: ConstFloatPtr, v: ConstFloatPtr,
                      lengths: UnsafePointer<Int>, B: Int, T: Int, NH: Int, HD: Int,
                      scratch: FloatPtr, workers: Int) {
    let H = NH * HD
    parallelFor(B * NH, workers: workers) { w, job in
        let b = job / NH, h = job % NH
        let off = b * T * H + h * HD
        attentionHeadForward(out + off, q: q + off, k: k + off, v: v + off, len: lengths[b],
                             T: T, H: H, HD: HD, att: scratch + w * 2 * T * T)
    }
}

/// dq, dk, dv (B,T,H) += gradients of `attentionForward` given dout (B,T,H).
func attentionBackward(dq: FloatPtr, dk: FloatPtr, dv: FloatPtr, dout: ConstFloatPtr,
                       q: ConstFloatPtr, k: ConstFloatPtr, v: ConstFloatPtr, lengths: UnsafePointer<Int>,
                       B: Int, T: Int, NH: Int, HD: Int, scratch: FloatPtr, workers: Int) {
    let H = NH * HD
    parallelFor(B * NH, workers: workers) { w, job in
        let b = job / NH, h = job % NH
        let off = b * T * H + h * HD
        let s = scratch + w * 2 * T * T
        attentionHeadBackward(dq: dq + off, dk: dk + off, dv: dv + off, dout: dout + off,
                              q: q + off, k: k + off, v: v + off, len: lengths[b],
                              T: T, H: H, HD: HD, att: s, datt: s + T * T)
    }
}

/// Runs `body(worker, job)` for job in 0..<jobs on `workers` threads (worker w takes jobs
/// w, w+workers, ...). Serial when `workers <= 1`.
func parallelFor(_ jobs: Int, workers: Int, _ body: (Int, Int) -> Void) {
    if workers <= 1 || jobs <= 1 {
        for j in 0 ..< jobs { body(0, j) }
        return
    }
    withoutActuallyEscaping(body) { body in
        let box = UncheckedBox(body)   // workers touch disjoint jobs; the kernels write disjoint slices
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            var j = w
            while j < jobs { box.value(w, j); j += workers }
        }
    }
}

/// Carries a non-Sendable value into `concurrentPerform`; safe because the jobs are disjoint.
struct UncheckedBox<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

// MARK: - residual, tanh

/// out (n) = a + b.
func residualForward(_ out: FloatPtr, a: ConstFloatPtr, b: ConstFloatPtr, count: Int) {
    for i in 0 ..< count { out[i] = a[i] + b[i] }
}

/// out (n) = tanh(inp).
func tanhForward(_ out: FloatPtr, inp: ConstFloatPtr, count: Int) {
    for i in 0 ..< count { out[i] = tanhf(inp[i]) }
}

/// dinp (n) += dout * (1 - out^2), out = tanh(inp).
func tanhBackward(dinp: FloatPtr, out: ConstFloatPtr, dout: ConstFloatPtr, count: Int) {
    for i in 0 ..< count { dinp[i] += dout[i] * (1 - out[i] * out[i]) }
}

// MARK: - pooling

/// out (B,H) = pooled final hidden states inp (B,T,H): `.cls` position 0 (HF
/// `EsmClassificationHead`); `.mean` the mean over positions 1..<len-1 (residues only;
/// zero when a row has no residue).
func poolForward(_ out: FloatPtr, inp: ConstFloatPtr, lengths: UnsafePointer<Int>, pooling: Pooling,
                 B: Int, T: Int, H: Int) {
    for b in 0 ..< B {
        let o = out + b * H
        switch pooling {
        case .cls:
            o.update(from: inp + b * T * H, count: H)
        case .mean:
            o.update(repeating: 0, count: H)
            let lo = 1, hi = min(lengths[b], T) - 1
            if hi <= lo { continue }
            for t in lo ..< hi {
                let x = inp + (b * T + t) * H
                for i in 0 ..< H { o[i] += x[i] }
            }
            let inv = 1 / Float(hi - lo)
            for i in 0 ..< H { o[i] *= inv }
        }
    }
}

/// dinp (B,T,H) += gradient of `poolForward` given dout (B,H).
func poolBackward(dinp: FloatPtr, dout: ConstFloatPtr, lengths: UnsafePointer<Int>, pooling: Pooling,
                  B: Int, T: Int, H: Int) {
    for b in 0 ..< B {
        let d = dout + b * H
        switch pooling {
        case .cls:
            let x = dinp + b * T * H
            for i in 0 ..< H { x[i] += d[i] }
        case .mean:
            let lo = 1, hi = min(lengths[b], T) - 1
            if hi <= lo { continue }
            let inv = 1 / Float(hi - lo)
            for t in lo ..< hi {
                let x = dinp + (b * T + t) * H
                for i in 0 ..< H { x[i] += d[i] * inv }
            }
        }
    }
}

// MARK: - BLAS probe

/// Throughput reference for benchmarks: C (m,n) = A (m,k) B^T with B (n,k), row-major float32,
/// split over `workers` threads by rows exactly as the model's Linear layers do it
/// (single-threaded OpenBLAS per thread). Returns the best of `repeats` runs in GFLOP/s
/// (2mnk floating-point operations per product).
public func sgemmThroughput(m: Int, n: Int, k: Int, workers: Int, repeats: Int = 10) -> Double {
    let a = UnsafeMutablePointer<Float>.allocate(capacity: m * k), b = UnsafeMutablePointer<Float>.allocate(capacity: n * k)
    let c = UnsafeMutablePointer<Float>.allocate(capacity: m * n)
    defer { a.deallocate(); b.deallocate(); c.deallocate() }
    for i in 0 ..< m * k { a[i] = Float(i % 7) * 0.01 }
    for i in 0 ..< n * k { b[i] = Float(i % 5) * 0.01 }
    var best = Double.infinity
    for _ in 0 ..< max(1, repeats) {
        let t0 = DispatchTime.now().uptimeNanoseconds
        linearForward(c, inp: a, weight: b, bias: nil, N: m, IN: k, OUT: n, workers: workers)
        best = min(best, Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9)
    }
    return 2 * Double(m) * Double(n) * Double(k) / best / 1e9
}
