import CBLAS
import Foundation

/// Errors raised by `ESMClassifier`.
public enum ESMError: Error, CustomStringConvertible, Equatable {
    /// The parameter buffer was built for another configuration.
    case layoutMismatch(expected: Int, got: Int)
    /// A token id outside `0 ..< vocabSize` at (row, position).
    case tokenOutOfVocabulary(row: Int, position: Int, id: Int32, vocabSize: Int)
    /// `lengths[row]` is not in `0 ... T` or the token array has the wrong size.
    case malformedBatch(String)

    public var description: String {
        switch self {
        case .layoutMismatch(let e, let g):
            return "parameter buffer layout does not match the model config (expected \(e) parameters, got \(g)); "
                + "build the buffer with ParameterLayout(config:) of the same config"
        case .tokenOutOfVocabulary(let r, let p, let id, let v):
            return "token id \(id) at row \(r), position \(p) is outside the vocabulary 0..<\(v); tokenize with the ESM-2 alphabet"
        case .malformedBatch(let m):
            return "malformed token batch: \(m); build it with TokenBatch(sequences:)"
        }
    }
}

/// Growable float scratch memory (never shrinks), so hot loops do not allocate.
final class GrowBuffer {
    private(set) var pointer: UnsafeMutablePointer<Float>
    private(set) var capacity: Int

    init() {
        pointer = .allocate(capacity: 1)
        capacity = 1
    }

    /// Makes room for `count` floats (old contents are discarded when it grows).
    func ensure(_ count: Int) {
        if count > capacity {
            pointer.deallocate()
            pointer = .allocate(capacity: count)
            capacity = count
        }
    }

    deinit { pointer.deallocate() }
}

/// Offsets of one block's tensors in the flat parameter buffer.
struct LayerOffsets {
    var lnAW = 0, lnAB = 0, qW = 0, qB = 0, kW = 0, kB = 0, vW = 0, vB = 0, oW = 0, oB = 0
    var lnFW = 0, lnFB = 0, fcW = 0, fcB = 0, projW = 0, projB = 0

    init(_ layout: ParameterLayout, layer l: Int) {
        func o(_ t: LayerTensor) -> Int { layout.spec(layer: l, t).offset }
        lnAW = o(.attentionLayerNormWeight); lnAB = o(.attentionLayerNormBias)
        qW = o(.queryWeight); qB = o(.queryBias); kW = o(.keyWeight); kB = o(.keyBias)
        vW = o(.valueWeight); vB = o(.valueBias); oW = o(.attentionOutputWeight); oB = o(.attentionOutputBias)
        lnFW = o(.ffnLayerNormWeight); lnFB = o(.ffnLayerNormBias)
        fcW = o(.intermediateWeight); fcB = o(.intermediateBias); projW = o(.outputWeight); projB = o(.outputBias)
    }
}

/// ESM-2 encoder with a sequence-classification head, forward and backward written by hand
/// (kernels in Kernels.swift), exactly HuggingFace `EsmForSequenceClassification`
/// (`modeling_esm.py`, REFERENCE.md section 2) without dropout, plus the kneuron
/// `.mean` pooling option.
///
/// Not thread-safe: one instance holds the activations of its last forward.
public final class ESMClassifier {
    /// The architecture.
    public let config: ESMConfig
    /// All parameters, one flat buffer in `ParameterLayout(config:)` order.
    public var parameters: ParameterBuffer
    /// Threads used by the kernels (attention split by (row, head), Linear products by rows);
    /// default min(2, cores). OpenBLAS itself is set to one thread (see `init`), so the two
    /// levels of threading never oversubscribe the cores. Results do not depend on it.
    public var workers: Int = min(2, ProcessInfo.processInfo.activeProcessorCount)

    private let layers: [LayerOffsets]
    private let wteOff: Int, lnFinalW: Int, lnFinalB: Int, denseW: Int, denseB: Int, outW: Int, outB: Int

    // Shape of the last forward.
    private var B = 0, T = 0
    private var lastTokens: [Int32] = []
    private var lastLengths: [Int] = []
    private var hasQKVScale = false
    private var scaledIntermediateLayer: Int? = nil

    // Cached activations of the last forward (see `forward`).
    private let resid = GrowBuffer()      // (L+1, N, H): resid[0] embeddings, resid[l+1] after block l
    private let residMid = GrowBuffer()   // (L, N, H) after the attention half of block l
    private let lnA = GrowBuffer()        // (L, N, H)
    private let lnAStats = GrowBuffer()   // (L, 2, N) mean, rstd
    private let qCache = GrowBuffer()     // (L, N, H) scaled, rotated query
    private let kCache = GrowBuffer()     // (L, N, H) rotated key
    private let vCache = GrowBuffer()     // (L, N, H)
    private let attnOut = GrowBuffer()    // (L, N, H) before the output projection
    private let lnF = GrowBuffer()        // (L, N, H)
    private let lnFStats = GrowBuffer()   // (L, 2, N)
    private let fcPre = GrowBuffer()      // (L, N, I)
    private let fcAct = GrowBuffer()      // (L, N, I)
    private let finalOut = GrowBuffer()   // (N, H)
    private let finalStats = GrowBuffer() // (2, N)
    private let head = GrowBuffer()       // pooled (B,H), densePre (B,H), denseAct (B,H), logits (B,C)
    private let rowScales = GrowBuffer()  // token-dropout scale (B), qkv scale (B), intermediate scale (B)
    private let rope = GrowBuffer()       // cos (T,HD/2), sin (T,HD/2)
    private let tmp = GrowBuffer()        // (N, max(H,I))
    private let attScratch = GrowBuffer() // workers * 2*T*T
    // Backward scratch.
    private let dResid = GrowBuffer(), dLn = GrowBuffer(), dAttn = GrowBuffer()
    private let dqRot = GrowBuffer(), dkRot = GrowBuffer(), dqRaw = GrowBuffer(), dkRaw = GrowBuffer()
    private let dv = GrowBuffer(), dFc = GrowBuffer(), dAct = GrowBuffer(), dHead = GrowBuffer()
    private let lnScratch = GrowBuffer()
    private let lnSink = GrowBuffer()     // 2H: LayerNorm weight/bias gradients of input-only passes

    /// Wraps existing parameters.
    /// - Throws: `ESMError.layoutMismatch` when `parameters.layout` is not `ParameterLayout(config:)`;
    ///   `ESMConfigError` when the config is invalid.
    public init(config: ESMConfig, parameters: ParameterBuffer) throws {
        try config.validate()
        let layout = ParameterLayout(config: config)
        guard parameters.layout == layout, parameters.values.count == layout.count else {
            throw ESMError.layoutMismatch(expected: layout.count, got: parameters.values.count)
        }
        self.config = config
        self.parameters = parameters
        layers = (0 ..< config.numHiddenLayers).map { LayerOffsets(layout, layer: $0) }
        wteOff = layout.spec(.wordEmbeddings).offset
        lnFinalW = layout.spec(.finalLayerNormWeight).offset
        lnFinalB = layout.spec(.finalLayerNormBias).offset
        denseW = layout.spec(.classifierDenseWeight).offset
        denseB = layout.spec(.classifierDenseBias).offset
        outW = layout.spec(.classifierOutWeight).offset
        outB = layout.spec(.classifierOutBias).offset
        lnScratch.ensure(2 * config.hiddenSize)
        lnSink.ensure(2 * config.hiddenSize)
        // OpenBLAS's own threads spin-wait between calls and fight the kernels' workers for the
        // cores (measured: >50% of training time in sched_yield); parallelism is done here.
        openblas_set_num_threads(1)
    }

    /// A freshly initialised model as HF `EsmPreTrainedModel._init_weights`: embeddings and
    /// Linear weights ~ N(0, 0.02^2) (the `<pad>` embedding row zeroed), biases 0, LayerNorm
    /// weight 1 and bias 0. Samples come from `SplitMix64(seed:)` + Box-Muller, tensor by
    /// tensor in layout order, so the weights are identical on every machine.
    /// An invalid config (see `ESMConfig.validate`) yields a model whose forward is undefined;
    /// validate configs from user input first.
    public convenience init(config: ESMConfig, seed: UInt64) {
        let layout = ParameterLayout(config: config)
        var p = ParameterBuffer(layout: layout)
        var rng = SplitMix64(seed: seed)
        p.values.withUnsafeMutableBufferPointer { buf in
            for spec in layout.tensors {
                let slice = UnsafeMutableBufferPointer(rebasing: buf[spec.range])
                if spec.shape.count == 2 {
                    rng.fillNormal(slice, std: 0.02)
                } else if spec.name.hasSuffix("LayerNorm.weight") || spec.name.hasSuffix("emb_layer_norm_after.weight") {
                    slice.update(repeating: 1)
                }
            }
            let pad = config.padTokenId
            if pad >= 0 && pad < config.vocabSize {
                let off = layout.spec(.wordEmbeddings).offset + pad * config.hiddenSize
                for i in 0 ..< config.hiddenSize { buf[off + i] = 0 }
            }
        }
        // swiftlint:disable:next force_try
        try! self.init(config: config, parameters: p)   // layout built from the same config
    }

    /// Checks a batch before `forward`: sizes consistent, lengths in 0...T, every non-pad id
    /// in the vocabulary.
    /// - Throws: `ESMError.malformedBatch`, `ESMError.tokenOutOfVocabulary`.
    public func check(_ batch: TokenBatch) throws {
        guard batch.tokens.count == batch.batchSize * batch.length, batch.lengths.count == batch.batchSize else {
            throw ESMError.malformedBatch("tokens \(batch.tokens.count) != B*T = \(batch.batchSize)*\(batch.length) or lengths count \(batch.lengths.count) != B")
        }
        for b in 0 ..< batch.batchSize {
            guard batch.lengths[b] >= 0 && batch.lengths[b] <= batch.length else {
                throw ESMError.malformedBatch("lengths[\(b)] = \(batch.lengths[b]) outside 0...\(batch.length)")
            }
            for t in 0 ..< batch.lengths[b] {
                let id = batch.tokens[b * batch.length + t]
                if id < 0 || Int(id) >= config.vocabSize {
                    throw ESMError.tokenOutOfVocabulary(row: b, position: t, id: id, vocabSize: config.vocabSize)
                }
            }
        }
    }

    private func ensureCapacity(B: Int, T: Int) {
        let L = config.numHiddenLayers, H = config.hiddenSize, I = config.intermediateSize
        let N = B * T
        resid.ensure((L + 1) * N * H)
        for buf in [residMid, lnA, qCache, kCache, vCache, attnOut, lnF] { buf.ensure(L * N * H) }
        lnAStats.ensure(L * 2 * N); lnFStats.ensure(L * 2 * N)
        fcPre.ensure(L * N * I); fcAct.ensure(L * N * I)
        finalOut.ensure(N * H); finalStats.ensure(2 * N)
        head.ensure(B * (3 * H + config.numLabels))
        rowScales.ensure(3 * B)
        rope.ensure(T * config.headDim)
        tmp.ensure(N * max(H, I))
        attScratch.ensure(max(1, workers) * 2 * T * T)
    }

    /// Runs the classifier and caches what `backward` needs.
    ///
    /// - Parameters:
    ///   - batch: B rows of T tokens (see `TokenBatch`); ids outside the vocabulary embed as
    ///     zero (call `check(_:)` first for user input).
    ///   - qkvScale: optional factors (B): row b uses `(qkvScale[b] * W) x + bias` for the
    ///     query, key and value projections of every layer (integrated gradients, all steps of
    ///     one sequence as rows). Must have B entries.
    ///   - intermediateScale: optional per-row factors (B) for ONE layer's FFN intermediate
    ///     activation: row b feeds `output.dense` with `factors[b] * gelu(intermediate.dense(LN_f(x)))`
    ///     at every position (integrated gradients over FFN neurons, see `IntermediateScale`).
    ///     `layer` must be in `0 ..< numHiddenLayers` and `factors` must have B entries.
    /// - Returns: logits (B,C) row-major. Empty for an empty batch.
    public func forward(_ batch: TokenBatch, qkvScale: [Float]? = nil,
                        intermediateScale: IntermediateScale? = nil) -> [Float] {
        let B = batch.batchSize, T = batch.length
        self.B = B; self.T = T
        lastTokens = batch.tokens
        lastLengths = batch.lengths.map { min(max($0, 0), T) }
        hasQKVScale = qkvScale != nil
        scaledIntermediateLayer = intermediateScale?.layer
        if B == 0 || T == 0 { return [Float](repeating: 0, count: B * config.numLabels) }
        precondition(qkvScale == nil || qkvScale!.count == B, "qkvScale must have one factor per batch row")
        if let intermediateScale {
            precondition(intermediateScale.factors.count == B, "intermediateScale must have one factor per batch row")
            precondition(intermediateScale.layer >= 0 && intermediateScale.layer < config.numHiddenLayers,
                         "intermediateScale.layer outside 0..<numHiddenLayers")
        }
        ensureCapacity(B: B, T: T)
        let L = config.numHiddenLayers, H = config.hiddenSize, I = config.intermediateSize
        let NH = config.numAttentionHeads, HD = config.headDim, C = config.numLabels, V = config.vocabSize
        let N = B * T, NHsz = N * H, eps = config.layerNormEps

        // Per-row factors: token dropout (HF: 0.88 / (1 - masks/len)) and qkv scale.
        let tdScale = rowScales.pointer, qkvS = rowScales.pointer + B, ffnS = rowScales.pointer + 2 * B
        for b in 0 ..< B {
            if config.tokenDropout {
                let len = lastLengths[b]
                var masks = 0
                for t in 0 ..< len where batch.tokens[b * T + t] == Int32(config.maskTokenId) { masks += 1 }
                let ratio = len > 0 ? Float(masks) / Float(len) : 0
                tdScale[b] = ratio < 1 ? Float(1 - 0.15 * 0.8) / (1 - ratio) : 0
            } else {
                tdScale[b] = 1
            }
            qkvS[b] = qkvScale?[b] ?? 1
            ffnS[b] = intermediateScale?.factors[b] ?? 1
        }
        rotaryTables(cos: rope.pointer, sin: rope.pointer + T * HD / 2, T: T, HD: HD)
        let cosT = rope.pointer, sinT = rope.pointer + T * HD / 2
        let qScale = 1 / Float(HD).squareRoot()
        let rs: ConstFloatPtr? = qkvScale == nil ? nil : ConstFloatPtr(qkvS)

        parameters.values.withUnsafeBufferPointer { pbuf in
            let P = pbuf.baseAddress!
            batch.tokens.withUnsafeBufferPointer { tok in
                lastLengths.withUnsafeBufferPointer { lens in
                    embeddingForward(resid.pointer, tokens: tok.baseAddress!, lengths: lens.baseAddress!,
                                     wte: P + wteOff, rowScale: tdScale, maskToken: Int32(config.maskTokenId),
                                     zeroMask: config.tokenDropout, B: B, T: T, H: H, V: V)
                    for l in 0 ..< L {
                        let w = layers[l]
                        let (x, xm, la, lf, q, k, v, ao, sa, sf, pre, act) = cached(layer: l, N: N)
                        // x_mid = x + Wo Attn(LN_a(x)) + bo
                        layerNormForward(la, mean: sa, rstd: sa + N, inp: x, weight: P + w.lnAW, bias: P + w.lnAB,
                                         N: N, H: H, eps: eps)
                        linearForward(tmp.pointer, inp: la, weight: P + w.qW, bias: P + w.qB, N: N, IN: H, OUT: H,
                                      rowScale: rs, rowsPerScale: T, workers: workers)
                        rotaryForward(q, inp: tmp.pointer, cos: cosT, sin: sinT, scale: qScale, B: B, T: T, NH: NH, HD: HD)
                        linearForward(tmp.pointer, inp: la, weight: P + w.kW, bias: P + w.kB, N: N, IN: H, OUT: H,
                                      rowScale: rs, rowsPerScale: T, workers: workers)
                        rotaryForward(k, inp: tmp.pointer, cos: cosT, sin: sinT, scale: 1, B: B, T: T, NH: NH, HD: HD)
                        linearForward(v, inp: la, weight: P + w.vW, bias: P + w.vB, N: N, IN: H, OUT: H,
                                      rowScale: rs, rowsPerScale: T, workers: workers)
                        attentionForward(ao, q: q, k: k, v: v, lengths: lens.baseAddress!, B: B, T: T, NH: NH, HD: HD,
                                         scratch: attScratch.pointer, workers: workers)
                        linearForward(tmp.pointer, inp: ao, weight: P + w.oW, bias: P + w.oB, N: N, IN: H, OUT: H, workers: workers)
                        residualForward(xm, a: x, b: tmp.pointer, count: NHsz)
                        // x_next = x_mid + W2 gelu(W1 LN_f(x_mid) + b1) + b2
                        layerNormForward(lf, mean: sf, rstd: sf + N, inp: xm, weight: P + w.lnFW, bias: P + w.lnFB,
                                         N: N, H: H, eps: eps)
                        linearForward(pre, inp: lf, weight: P + w.fcW, bias: P + w.fcB, N: N, IN: H, OUT: I, workers: workers)
                        geluForward(act, inp: pre, count: N * I)
                        if l == scaledIntermediateLayer {   // act (B, T*I) *= factors[b]
                            rowScaleForward(act, scale: ffnS, B: B, rowLength: T * I)
                        }
                        linearForward(tmp.pointer, inp: act, weight: P + w.projW, bias: P + w.projB, N: N, IN: I, OUT: H, workers: workers)
                        residualForward(resid.pointer + (l + 1) * NHsz, a: xm, b: tmp.pointer, count: NHsz)
                    }
                    layerNormForward(finalOut.pointer, mean: finalStats.pointer, rstd: finalStats.pointer + N,
                                     inp: resid.pointer + L * NHsz, weight: P + lnFinalW, bias: P + lnFinalB,
                                     N: N, H: H, eps: eps)
                    let pooled = head.pointer, densePre = pooled + B * H, denseAct = densePre + B * H
                    let logits = denseAct + B * H
                    poolForward(pooled, inp: finalOut.pointer, lengths: lens.baseAddress!, pooling: config.classifierPooling,
                                B: B, T: T, H: H)
                    linearForward(densePre, inp: pooled, weight: P + denseW, bias: P + denseB, N: B, IN: H, OUT: H, workers: workers)
                    tanhForward(denseAct, inp: densePre, count: B * H)
                    linearForward(logits, inp: denseAct, weight: P + outW, bias: P + outB, N: B, IN: H, OUT: C, workers: workers)
                }
            }
        }
        let logits = head.pointer + 3 * B * H
        return Array(UnsafeBufferPointer(start: logits, count: B * C))
    }

    /// Backward of the last `forward`: ACCUMULATES dL/dparameters into `grads` (same layout)
    /// given dL/dlogits (B,C). With a `qkvScale` forward, dW_{q,k,v} get the factor
    /// `qkvScale[b]` of each row (chain rule); bias gradients do not. With an
    /// `intermediateScale` forward, the gradient reaching that layer's `intermediate.dense`
    /// gets the factor `factors[b]` of each row.
    /// Calling it before any forward, or with dLogits of the wrong size, is a programming error.
    public func backward(dLogits: [Float], into grads: inout ParameterBuffer) {
        precondition(grads.values.count == parameters.values.count, "grads must have the parameter layout")
        grads.values.withUnsafeMutableBufferPointer { gbuf in
            backwardPass(dLogits: dLogits, grads: gbuf.baseAddress!, stopAtIntermediateOf: nil)
        }
    }

    /// Gradient of the last `forward` with respect to the FFN intermediate activation of
    /// `layer` as it entered `output.dense`: dL/da' (B,T,I) row-major, where
    /// a' = factors[b] * gelu(intermediate.dense(LN_f(x))) when that forward had an
    /// `IntermediateScale` for `layer` (a' = a otherwise), given dL/dlogits (B,C).
    /// Only the head and blocks `layer ..< L` are visited and no parameter gradient is
    /// computed (no weight products), so it costs well under a full `backward`.
    /// Padding rows (t >= len[b]) get 0 (they never reach the logits).
    /// Empty when `layer` is outside `0 ..< numHiddenLayers` or no forward ran.
    public func intermediateGradient(dLogits: [Float], layer: Int) -> [Float] {
        guard layer >= 0, layer < config.numHiddenLayers, B * T > 0 else { return [] }
        backwardPass(dLogits: dLogits, grads: nil, stopAtIntermediateOf: layer)
        return copyOut(dAct.pointer, B * T * config.intermediateSize)
    }

    /// The backward pass. `grads` nil: input gradients only (weight products skipped, LayerNorm
    /// affine gradients sunk into scratch). `stopAtIntermediateOf` l: returns once dL/da' of
    /// block l's intermediate activation is in `dAct` (N,I).
    private func backwardPass(dLogits: [Float], grads: FloatPtr?, stopAtIntermediateOf stopLayer: Int?) {
        let B = self.B, T = self.T
        if B == 0 || T == 0 { return }
        let L = config.numHiddenLayers, H = config.hiddenSize, I = config.intermediateSize
        let NH = config.numAttentionHeads, HD = config.headDim, C = config.numLabels, V = config.vocabSize
        let N = B * T, NHsz = N * H
        precondition(dLogits.count == B * C, "dLogits must be (B,C) of the last forward")
        for buf in [dResid, dLn, dAttn, dqRot, dkRot, dqRaw, dkRaw, dv] { buf.ensure(NHsz) }
        dFc.ensure(N * I); dAct.ensure(N * I)
        dHead.ensure(3 * B * H)
        let cosT = rope.pointer, sinT = rope.pointer + T * HD / 2
        let qScale = 1 / Float(HD).squareRoot()
        let qkvS = rowScales.pointer + B, ffnS = rowScales.pointer + 2 * B
        let rs: ConstFloatPtr? = hasQKVScale ? ConstFloatPtr(qkvS) : nil
        let tdScale = rowScales.pointer
        // Gradient destinations: the parameter slot, or nothing / a scratch sink.
        let G = grads
        func g(_ offset: Int) -> FloatPtr? { G.map { $0 + offset } }
        let sinkW = lnSink.pointer, sinkB = lnSink.pointer + H
        func lnW(_ offset: Int) -> FloatPtr { G.map { $0 + offset } ?? sinkW }
        func lnB(_ offset: Int) -> FloatPtr { G.map { $0 + offset } ?? sinkB }

        parameters.values.withUnsafeBufferPointer { pbuf in
            let P = pbuf.baseAddress!
            lastTokens.withUnsafeBufferPointer { tok in
                lastLengths.withUnsafeBufferPointer { lensBuf in
                    let lens = lensBuf.baseAddress!
                    dLogits.withUnsafeBufferPointer { dl in
                        let pooled = head.pointer, densePre = pooled + B * H, denseAct = densePre + B * H
                        let dPooled = dHead.pointer, dDensePre = dPooled + B * H, dDenseAct = dDensePre + B * H
                        dHead.pointer.update(repeating: 0, count: 3 * B * H)
                        linearBackward(dinp: dDenseAct, dweight: g(outW), dbias: g(outB), dout: dl.baseAddress!,
                                       inp: denseAct, weight: P + outW, N: B, IN: H, OUT: C, workers: workers)
                        tanhBackward(dinp: dDensePre, out: denseAct, dout: dDenseAct, count: B * H)
                        linearBackward(dinp: dPooled, dweight: g(denseW), dbias: g(denseB), dout: dDensePre,
                                       inp: pooled, weight: P + denseW, N: B, IN: H, OUT: H, workers: workers)
                        dLn.pointer.update(repeating: 0, count: NHsz)
                        poolBackward(dinp: dLn.pointer, dout: dPooled, lengths: lens, pooling: config.classifierPooling,
                                     B: B, T: T, H: H)
                        dResid.pointer.update(repeating: 0, count: NHsz)
                        layerNormBackward(dinp: dResid.pointer, dweight: lnW(lnFinalW), dbias: lnB(lnFinalB),
                                          dout: dLn.pointer, inp: resid.pointer + L * NHsz, weight: P + lnFinalW,
                                          mean: finalStats.pointer, rstd: finalStats.pointer + N, N: N, H: H,
                                          scratch: lnScratch.pointer)
                    }
                    for l in stride(from: L - 1, through: stopLayer ?? 0, by: -1) {
                        let w = layers[l]
                        let (x, xm, la, lf, q, k, v, ao, sa, sf, pre, act) = cached(layer: l, N: N)
                        // FFN half; dResid holds dL/dx_next and gains dL/dx_mid.
                        dAct.pointer.update(repeating: 0, count: N * I)
                        linearBackward(dinp: dAct.pointer, dweight: g(w.projW), dbias: g(w.projB), dout: dResid.pointer,
                                       inp: act, weight: P + w.projW, N: N, IN: I, OUT: H, workers: workers)
                        if l == stopLayer { return }   // dAct = dL/da' of this layer
                        if l == scaledIntermediateLayer {   // dL/da = factors[b] * dL/da'
                            rowScaleBackward(dAct.pointer, scale: ffnS, B: B, rowLength: T * I)
                        }
                        dFc.pointer.update(repeating: 0, count: N * I)
                        geluBackward(dinp: dFc.pointer, inp: pre, dout: dAct.pointer, count: N * I)
                        dLn.pointer.update(repeating: 0, count: NHsz)
                        linearBackward(dinp: dLn.pointer, dweight: g(w.fcW), dbias: g(w.fcB), dout: dFc.pointer,
                                       inp: lf, weight: P + w.fcW, N: N, IN: H, OUT: I, workers: workers)
                        layerNormBackward(dinp: dResid.pointer, dweight: lnW(w.lnFW), dbias: lnB(w.lnFB), dout: dLn.pointer,
                                          inp: xm, weight: P + w.lnFW, mean: sf, rstd: sf + N, N: N, H: H,
                                          scratch: lnScratch.pointer)
                        // Attention half; dResid gains dL/dx.
                        dAttn.pointer.update(repeating: 0, count: NHsz)
                        linearBackward(dinp: dAttn.pointer, dweight: g(w.oW), dbias: g(w.oB), dout: dResid.pointer,
                                       inp: ao, weight: P + w.oW, N: N, IN: H, OUT: H, workers: workers)
                        for buf in [dqRot, dkRot, dv, dqRaw, dkRaw] { buf.pointer.update(repeating: 0, count: NHsz) }
                        attentionBackward(dq: dqRot.pointer, dk: dkRot.pointer, dv: dv.pointer, dout: dAttn.pointer,
                                          q: q, k: k, v: v, lengths: lens, B: B, T: T, NH: NH, HD: HD,
                                          scratch: attScratch.pointer, workers: workers)
                        rotaryBackward(dinp: dqRaw.pointer, dout: dqRot.pointer, cos: cosT, sin: sinT, scale: qScale,
                                       B: B, T: T, NH: NH, HD: HD)
                        rotaryBackward(dinp: dkRaw.pointer, dout: dkRot.pointer, cos: cosT, sin: sinT, scale: 1,
                                       B: B, T: T, NH: NH, HD: HD)
                        dLn.pointer.update(repeating: 0, count: NHsz)
                        let scratch = dAttn.pointer   // free now; N*H floats for the scaled dout
                        linearBackward(dinp: dLn.pointer, dweight: g(w.qW), dbias: g(w.qB), dout: dqRaw.pointer,
                                       inp: la, weight: P + w.qW, N: N, IN: H, OUT: H,
                                       rowScale: rs, rowsPerScale: T, scratch: scratch, workers: workers)
                        linearBackward(dinp: dLn.pointer, dweight: g(w.kW), dbias: g(w.kB), dout: dkRaw.pointer,
                                       inp: la, weight: P + w.kW, N: N, IN: H, OUT: H,
                                       rowScale: rs, rowsPerScale: T, scratch: scratch, workers: workers)
                        linearBackward(dinp: dLn.pointer, dweight: g(w.vW), dbias: g(w.vB), dout: dv.pointer,
                                       inp: la, weight: P + w.vW, N: N, IN: H, OUT: H,
                                       rowScale: rs, rowsPerScale: T, scratch: scratch, workers: workers)
                        layerNormBackward(dinp: dResid.pointer, dweight: lnW(w.lnAW), dbias: lnB(w.lnAB), dout: dLn.pointer,
                                          inp: x, weight: P + w.lnAW, mean: sa, rstd: sa + N, N: N, H: H,
                                          scratch: lnScratch.pointer)
                    }
                    if let G {
                        embeddingBackward(dwte: G + wteOff, dout: dResid.pointer, tokens: tok.baseAddress!, lengths: lens,
                                          rowScale: tdScale, maskToken: Int32(config.maskTokenId),
                                          zeroMask: config.tokenDropout, B: B, T: T, H: H, V: V)
                    }
                }
            }
        }
    }

    /// Views of block `layer`'s cached activations for N token rows, shared by forward and
    /// backward: residual in, mid residual, LN_a and LN_f outputs, q, k, v, attention output
    /// (each N x H), the two LayerNorms' (mean, rstd) stats (2N each), FFN pre/post GELU (N x I).
    @inline(__always)
    private func cached(layer l: Int, N: Int) -> (x: FloatPtr, xm: FloatPtr, la: FloatPtr, lf: FloatPtr, q: FloatPtr, k: FloatPtr,
                                                   v: FloatPtr, ao: FloatPtr, sa: FloatPtr, sf: FloatPtr, pre: FloatPtr, act: FloatPtr) {
        let NH = N * config.hiddenSize, NI = N * config.intermediateSize
        return (resid.pointer + l * NH, residMid.pointer + l * NH, lnA.pointer + l * NH, lnF.pointer + l * NH,
                qCache.pointer + l * NH, kCache.pointer + l * NH, vCache.pointer + l * NH, attnOut.pointer + l * NH,
                lnAStats.pointer + l * 2 * N, lnFStats.pointer + l * 2 * N, fcPre.pointer + l * NI, fcAct.pointer + l * NI)
    }

    private func copyOut(_ p: UnsafeMutablePointer<Float>, _ count: Int) -> [Float] {
        Array(UnsafeBufferPointer(start: p, count: count))
    }

    /// LN_a output of block `layer` from the last forward, the input of its query/key/value
    /// projections: (B,T,H) row-major, padding rows included (mask them by `lengths`).
    /// Empty when `layer` is out of range or no forward ran.
    public func attentionInput(layer: Int) -> [Float] {
        guard layer >= 0, layer < config.numHiddenLayers, B * T > 0 else { return [] }
        let n = B * T * config.hiddenSize
        return copyOut(lnA.pointer + layer * n, n)
    }

    /// FFN intermediate activation of block `layer` from the last forward, as it entered
    /// `output.dense`: gelu(intermediate.dense(LN_f(x))) (HF `EsmIntermediate` output), times
    /// the row's factor when that forward had an `IntermediateScale` for `layer`.
    /// (B,T,I) row-major, padding rows included. Empty when out of range or no forward ran.
    public func intermediateActivation(layer: Int) -> [Float] {
        guard layer >= 0, layer < config.numHiddenLayers, B * T > 0 else { return [] }
        let n = B * T * config.intermediateSize
        return copyOut(fcAct.pointer + layer * n, n)
    }

    /// Final hidden states after `emb_layer_norm_after` from the last forward (B,T,H)
    /// (HF `last_hidden_state`).
    public func finalHiddenStates() -> [Float] {
        guard B * T > 0 else { return [] }
        return copyOut(finalOut.pointer, B * T * config.hiddenSize)
    }

    /// Pooled vectors fed to `classifier.dense` in the last forward (B,H).
    public func pooledOutput() -> [Float] {
        guard B * T > 0 else { return [] }
        return copyOut(head.pointer, B * config.hiddenSize)
    }

    /// Embeddings after token dropout and padding zeroing (B,T,H) (HF `hidden_states[0]`).
    public func embeddingOutput() -> [Float] {
        guard B * T > 0 else { return [] }
        return copyOut(resid.pointer, B * T * config.hiddenSize)
    }

    /// Residual stream after block `afterLayer` (0-based), before the final LayerNorm (B,T,H)
    /// (HF `hidden_states[afterLayer + 1]`). Empty when out of range or no forward ran.
    public func hiddenStates(afterLayer: Int) -> [Float] {
        guard afterLayer >= 0, afterLayer < config.numHiddenLayers, B * T > 0 else { return [] }
        let n = B * T * config.hiddenSize
        return copyOut(resid.pointer + (afterLayer + 1) * n, n)
    }
}

/// A per-row scale of ONE layer's FFN intermediate activation, for integrated gradients over
/// FFN neurons (Dai et al. 2021, "Knowledge Neurons in Pretrained Transformers",
/// arXiv 2104.08696 section 3.1: the activation is scaled by alpha from the zero baseline).
/// In `ESMClassifier.forward(_:qkvScale:intermediateScale:)`, batch row b feeds block
/// `layer`'s `output.dense` with `factors[b] * gelu(intermediate.dense(LN_f(x)))` at every
/// position; nothing else changes.
public struct IntermediateScale: Sendable, Equatable {
    /// Block index, 0-based (`0 ..< numHiddenLayers`).
    public var layer: Int
    /// One factor per batch row (B); 1 is the unchanged model, 0 the baseline.
    public var factors: [Float]

    /// Scales block `layer`'s intermediate activation of batch row b by `factors[b]`.
    public init(layer: Int, factors: [Float]) {
        self.layer = layer
        self.factors = factors
    }
}
