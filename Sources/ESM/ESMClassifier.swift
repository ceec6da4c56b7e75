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
    private var hooks = ForwardHooks.none
    private var captured: [ModuleSite: [Float]] = [:]

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
    private let rowScales = GrowBuffer()  // token-dropout scale (B), weight scale (B), output scale (B)
    private let rope = GrowBuffer()       // cos (T,HD/2), sin (T,HD/2)
    private let tmp = GrowBuffer()        // (N, max(H,I))
    private let attScratch = GrowBuffer() // workers * 2*T*T
    // Backward scratch.
    private let dResid = GrowBuffer(), dLn = GrowBuffer(), dAttn = GrowBuffer()
    private let dqRot = GrowBuffer(), dkRot = GrowBuffer(), dqRaw = GrowBuffer(), dkRaw = GrowBuffer()
    private let dv = GrowBuffer(), dFc = GrowBuffer(), dAct = GrowBuffer(), dHead = GrowBuffer()
    private let dScaled = GrowBuffer()   // (N, H): row-scaled gradient of a scaled output whose unscaled gradient also flows on
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
    ///   - hooks: per-row scaling of the weights of named linear maps (`WeightScale`) or of
    ///     one linear map's output (`OutputScale`), and outputs to keep for `output(at:)`.
    ///     Factor arrays must have B entries and sites must name layers of the model
    ///     (programming errors otherwise).
    /// - Returns: logits (B,C) row-major. Empty for an empty batch.
    public func forward(_ batch: TokenBatch, hooks: ForwardHooks = .none) -> [Float] {
        let B = batch.batchSize, T = batch.length
        self.B = B; self.T = T
        lastTokens = batch.tokens
        lastLengths = batch.lengths.map { min(max($0, 0), T) }
        self.hooks = hooks
        captured = [:]
        if B == 0 || T == 0 { return [Float](repeating: 0, count: B * config.numLabels) }
        if let w = hooks.weightScale { precondition(w.factors.count == B, "weightScale must have one factor per batch row") }
        if let o = hooks.outputScale {
            precondition(o.factors.count == B, "outputScale must have one factor per batch row")
            precondition(o.site.layer >= 0 && o.site.layer < config.numHiddenLayers, "outputScale.site.layer outside 0..<numHiddenLayers")
        }
        ensureCapacity(B: B, T: T)
        let L = config.numHiddenLayers, H = config.hiddenSize, I = config.intermediateSize
        let NH = config.numAttentionHeads, HD = config.headDim, C = config.numLabels, V = config.vocabSize
        let N = B * T, NHsz = N * H, eps = config.layerNormEps

        // Per-row factors: token dropout (HF: 0.88 / (1 - masks/len)), weight scale, output scale.
        let tdScale = rowScales.pointer, wS = rowScales.pointer + B, oS = rowScales.pointer + 2 * B
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
            wS[b] = hooks.weightScale?.factors[b] ?? 1
            oS[b] = hooks.outputScale?.factors[b] ?? 1
        }
        rotaryTables(cos: rope.pointer, sin: rope.pointer + T * HD / 2, T: T, HD: HD)
        let cosT = rope.pointer, sinT = rope.pointer + T * HD / 2
        let qScale = 1 / Float(HD).squareRoot()
        let scaledWeights = hooks.weightScale?.modules ?? []
        /// The weight row scale of module m (nil = unscaled).
        func rs(_ m: LinearModule) -> ConstFloatPtr? { scaledWeights.contains(m) ? ConstFloatPtr(wS) : nil }
        /// After the output y (N, out) of the linear map at (l, m) is computed: apply the output
        /// scale and keep a copy when asked.
        func hook(_ l: Int, _ m: LinearModule, _ y: FloatPtr, _ out: Int) {
            let site = ModuleSite(layer: l, module: m)
            if hooks.outputScale?.site == site { rowScaleForward(y, scale: oS, B: B, rowLength: T * out) }
            if hooks.capture.contains(site) { captured[site] = copyOut(y, N * out) }
        }

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
                                      rowScale: rs(.query), rowsPerScale: T, workers: workers)
                        hook(l, .query, tmp.pointer, H)
                        rotaryForward(q, inp: tmp.pointer, cos: cosT, sin: sinT, scale: qScale, B: B, T: T, NH: NH, HD: HD)
                        linearForward(tmp.pointer, inp: la, weight: P + w.kW, bias: P + w.kB, N: N, IN: H, OUT: H,
                                      rowScale: rs(.key), rowsPerScale: T, workers: workers)
                        hook(l, .key, tmp.pointer, H)
                        rotaryForward(k, inp: tmp.pointer, cos: cosT, sin: sinT, scale: 1, B: B, T: T, NH: NH, HD: HD)
                        linearForward(v, inp: la, weight: P + w.vW, bias: P + w.vB, N: N, IN: H, OUT: H,
                                      rowScale: rs(.value), rowsPerScale: T, workers: workers)
                        hook(l, .value, v, H)
                        attentionForward(ao, q: q, k: k, v: v, lengths: lens.baseAddress!, B: B, T: T, NH: NH, HD: HD,
                                         scratch: attScratch.pointer, workers: workers)
                        linearForward(tmp.pointer, inp: ao, weight: P + w.oW, bias: P + w.oB, N: N, IN: H, OUT: H,
                                      rowScale: rs(.attentionOutput), rowsPerScale: T, workers: workers)
                        hook(l, .attentionOutput, tmp.pointer, H)
                        residualForward(xm, a: x, b: tmp.pointer, count: NHsz)
                        // x_next = x_mid + W2 gelu(W1 LN_f(x_mid) + b1) + b2
                        layerNormForward(lf, mean: sf, rstd: sf + N, inp: xm, weight: P + w.lnFW, bias: P + w.lnFB,
                                         N: N, H: H, eps: eps)
                        linearForward(pre, inp: lf, weight: P + w.fcW, bias: P + w.fcB, N: N, IN: H, OUT: I,
                                      rowScale: rs(.intermediate), rowsPerScale: T, workers: workers)
                        geluForward(act, inp: pre, count: N * I)
                        hook(l, .intermediate, act, I)
                        linearForward(tmp.pointer, inp: act, weight: P + w.projW, bias: P + w.projB, N: N, IN: I, OUT: H,
                                      rowScale: rs(.output), rowsPerScale: T, workers: workers)
                        hook(l, .output, tmp.pointer, H)
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
    /// given dL/dlogits (B,C). With a `WeightScale`, the weight gradients of the scaled modules
    /// get the factor of each row (chain rule: dL/dW = sum_b factors[b] dL/dW'_b); bias
    /// gradients do not. With an `OutputScale`, the gradient below that site gets the factor.
    /// - Parameter modules: when given, only the weight and bias gradients of these linear maps
    ///   (every layer) are computed and accumulated; every other slot of `grads` is left as it
    ///   is and the weight products of the other maps are skipped (integrated gradients over a
    ///   chosen module set needs no more). nil = every parameter.
    /// Calling it before any forward, or with dLogits of the wrong size, is a programming error.
    public func backward(dLogits: [Float], into grads: inout ParameterBuffer, modules: Set<LinearModule>? = nil) {
        precondition(grads.values.count == parameters.values.count, "grads must have the parameter layout")
        grads.values.withUnsafeMutableBufferPointer { gbuf in
            _ = backwardPass(dLogits: dLogits, grads: gbuf.baseAddress!, modules: modules, sites: [])
        }
    }

    /// Gradients of the last `forward` with respect to the outputs of the linear maps at
    /// `sites`, as they left the map (after the forward's `OutputScale` when it applied there;
    /// for `intermediate`, the activation after GELU): dL/dy (B,T,out) row-major per site, given
    /// dL/dlogits (B,C). Only the head and the blocks down to the lowest site are visited and no
    /// parameter gradient is computed (no weight products). Padding rows (t >= len[b]) get 0.
    /// Sites outside the model's layers are left out of the result; empty when no forward ran.
    public func outputGradients(dLogits: [Float], at sites: Set<ModuleSite>) -> [ModuleSite: [Float]] {
        let valid = sites.filter { $0.layer >= 0 && $0.layer < config.numHiddenLayers }
        guard !valid.isEmpty, B * T > 0 else { return [:] }
        return backwardPass(dLogits: dLogits, grads: nil, modules: nil, sites: valid)
    }

    /// The backward pass. `grads` nil: input gradients only (weight products skipped, LayerNorm
    /// affine gradients sunk into scratch), returning once the gradient of every site in `sites`
    /// is copied out. `modules`: the linear maps whose parameter gradients are wanted (nil = all).
    private func backwardPass(dLogits: [Float], grads: FloatPtr?, modules: Set<LinearModule>?,
                              sites: Set<ModuleSite>) -> [ModuleSite: [Float]] {
        let B = self.B, T = self.T
        if B == 0 || T == 0 { return [:] }
        let L = config.numHiddenLayers, H = config.hiddenSize, I = config.intermediateSize
        let NH = config.numAttentionHeads, HD = config.headDim, C = config.numLabels, V = config.vocabSize
        let N = B * T, NHsz = N * H
        precondition(dLogits.count == B * C, "dLogits must be (B,C) of the last forward")
        for buf in [dResid, dLn, dAttn, dqRot, dkRot, dqRaw, dkRaw, dv] { buf.ensure(NHsz) }
        dFc.ensure(N * I); dAct.ensure(N * I); dScaled.ensure(NHsz)
        dHead.ensure(3 * B * H)
        let cosT = rope.pointer, sinT = rope.pointer + T * HD / 2
        let qScale = 1 / Float(HD).squareRoot()
        let wS = rowScales.pointer + B, oS = rowScales.pointer + 2 * B
        let scaledWeights = hooks.weightScale?.modules ?? []
        func rs(_ m: LinearModule) -> ConstFloatPtr? { scaledWeights.contains(m) ? ConstFloatPtr(wS) : nil }
        let tdScale = rowScales.pointer
        // Gradient destinations: the parameter slot, or nothing / a scratch sink.
        let G = grads
        let allParameters = modules == nil
        func g(_ m: LinearModule, _ offset: Int) -> FloatPtr? {
            guard let G, modules?.contains(m) ?? true else { return nil }
            return G + offset
        }
        func other(_ offset: Int) -> FloatPtr? { allParameters ? G.map { $0 + offset } : nil }
        let sinkW = lnSink.pointer, sinkB = lnSink.pointer + H
        func lnW(_ offset: Int) -> FloatPtr { other(offset) ?? sinkW }
        func lnB(_ offset: Int) -> FloatPtr { other(offset) ?? sinkB }
        var out: [ModuleSite: [Float]] = [:]
        let lowest = sites.min()
        /// At the site (l, m) whose output gradient dL/dy' is in `d` (N, width): copy it out
        /// when asked; returns the gradient to propagate below, dL/dy = factors[b] dL/dy' when
        /// the forward scaled this output (in `scratch`, or in place when `scratch` is nil),
        /// else `d`. Sets `done` once the lowest asked site is reached.
        var done = false
        func visit(_ l: Int, _ m: LinearModule, _ d: FloatPtr, _ width: Int, scratch: FloatPtr?) -> ConstFloatPtr {
            let site = ModuleSite(layer: l, module: m)
            if sites.contains(site) { out[site] = copyOut(d, N * width) }
            if G == nil && site == lowest { done = true }
            guard hooks.outputScale?.site == site else { return ConstFloatPtr(d) }
            let target = scratch ?? d
            if let scratch { scratch.update(from: d, count: N * width) }
            rowScaleBackward(target, scale: oS, B: B, rowLength: T * width)
            return ConstFloatPtr(target)
        }
        let stopLayer = G == nil ? (lowest?.layer ?? 0) : 0

        parameters.values.withUnsafeBufferPointer { pbuf in
            let P = pbuf.baseAddress!
            lastTokens.withUnsafeBufferPointer { tok in
                lastLengths.withUnsafeBufferPointer { lensBuf in
                    let lens = lensBuf.baseAddress!
                    dLogits.withUnsafeBufferPointer { dl in
                        let pooled = head.pointer, densePre = pooled + B * H, denseAct = densePre + B * H
                        let dPooled = dHead.pointer, dDensePre = dPooled + B * H, dDenseAct = dDensePre + B * H
                        dHead.pointer.update(repeating: 0, count: 3 * B * H)
                        linearBackward(dinp: dDenseAct, dweight: other(outW), dbias: other(outB), dout: dl.baseAddress!,
                                       inp: denseAct, weight: P + outW, N: B, IN: H, OUT: C, workers: workers)
                        tanhBackward(dinp: dDensePre, out: denseAct, dout: dDenseAct, count: B * H)
                        linearBackward(dinp: dPooled, dweight: other(denseW), dbias: other(denseB), dout: dDensePre,
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
                    for l in stride(from: L - 1, through: stopLayer, by: -1) {
                        let w = layers[l]
                        let (x, xm, la, lf, q, k, v, ao, sa, sf, pre, act) = cached(layer: l, N: N)
                        // FFN half; dResid holds dL/dx_next (= dL/d output.dense's output) and gains dL/dx_mid.
                        // The residual path keeps dResid unscaled: a scaled output's gradient goes to dScaled.
                        let dProj = visit(l, .output, dResid.pointer, H, scratch: dScaled.pointer)
                        if done { return }
                        dAct.pointer.update(repeating: 0, count: N * I)
                        linearBackward(dinp: dAct.pointer, dweight: g(.output, w.projW), dbias: g(.output, w.projB), dout: dProj,
                                       inp: act, weight: P + w.projW, N: N, IN: I, OUT: H,
                                       rowScale: rs(.output), rowsPerScale: T, scratch: tmp.pointer, workers: workers)
                        _ = visit(l, .intermediate, dAct.pointer, I, scratch: nil)   // dL/da' -> dL/da in place
                        if done { return }
                        dFc.pointer.update(repeating: 0, count: N * I)
                        geluBackward(dinp: dFc.pointer, inp: pre, dout: dAct.pointer, count: N * I)
                        dLn.pointer.update(repeating: 0, count: NHsz)
                        linearBackward(dinp: dLn.pointer, dweight: g(.intermediate, w.fcW), dbias: g(.intermediate, w.fcB), dout: dFc.pointer,
                                       inp: lf, weight: P + w.fcW, N: N, IN: H, OUT: I,
                                       rowScale: rs(.intermediate), rowsPerScale: T, scratch: tmp.pointer, workers: workers)
                        layerNormBackward(dinp: dResid.pointer, dweight: lnW(w.lnFW), dbias: lnB(w.lnFB), dout: dLn.pointer,
                                          inp: xm, weight: P + w.lnFW, mean: sf, rstd: sf + N, N: N, H: H,
                                          scratch: lnScratch.pointer)
                        // Attention half; dResid = dL/dx_mid (= dL/d attention.output.dense's output) and gains dL/dx.
                        let dO = visit(l, .attentionOutput, dResid.pointer, H, scratch: dScaled.pointer)
                        if done { return }
                        dAttn.pointer.update(repeating: 0, count: NHsz)
                        linearBackward(dinp: dAttn.pointer, dweight: g(.attentionOutput, w.oW), dbias: g(.attentionOutput, w.oB), dout: dO,
                                       inp: ao, weight: P + w.oW, N: N, IN: H, OUT: H,
                                       rowScale: rs(.attentionOutput), rowsPerScale: T, scratch: tmp.pointer, workers: workers)
                        for buf in [dqRot, dkRot, dv, dqRaw, dkRaw] { buf.pointer.update(repeating: 0, count: NHsz) }
                        attentionBackward(dq: dqRot.pointer, dk: dkRot.pointer, dv: dv.pointer, dout: dAttn.pointer,
                                          q: q, k: k, v: v, lengths: lens, B: B, T: T, NH: NH, HD: HD,
                                          scratch: attScratch.pointer, workers: workers)
                        rotaryBackward(dinp: dqRaw.pointer, dout: dqRot.pointer, cos: cosT, sin: sinT, scale: qScale,
                                       B: B, T: T, NH: NH, HD: HD)
                        rotaryBackward(dinp: dkRaw.pointer, dout: dkRot.pointer, cos: cosT, sin: sinT, scale: 1,
                                       B: B, T: T, NH: NH, HD: HD)
                        // dv, dqRaw, dkRaw feed only their own Linear: scaled in place.
                        _ = visit(l, .value, dv.pointer, H, scratch: nil)
                        _ = visit(l, .query, dqRaw.pointer, H, scratch: nil)
                        _ = visit(l, .key, dkRaw.pointer, H, scratch: nil)
                        if done { return }
                        dLn.pointer.update(repeating: 0, count: NHsz)
                        let scratch = tmp.pointer   // N*H floats for the row-scaled dout
                        linearBackward(dinp: dLn.pointer, dweight: g(.query, w.qW), dbias: g(.query, w.qB), dout: dqRaw.pointer,
                                       inp: la, weight: P + w.qW, N: N, IN: H, OUT: H,
                                       rowScale: rs(.query), rowsPerScale: T, scratch: scratch, workers: workers)
                        linearBackward(dinp: dLn.pointer, dweight: g(.key, w.kW), dbias: g(.key, w.kB), dout: dkRaw.pointer,
                                       inp: la, weight: P + w.kW, N: N, IN: H, OUT: H,
                                       rowScale: rs(.key), rowsPerScale: T, scratch: scratch, workers: workers)
                        linearBackward(dinp: dLn.pointer, dweight: g(.value, w.vW), dbias: g(.value, w.vB), dout: dv.pointer,
                                       inp: la, weight: P + w.vW, N: N, IN: H, OUT: H,
                                       rowScale: rs(.value), rowsPerScale: T, scratch: scratch, workers: workers)
                        layerNormBackward(dinp: dResid.pointer, dweight: lnW(w.lnAW), dbias: lnB(w.lnAB), dout: dLn.pointer,
                                          inp: x, weight: P + w.lnAW, mean: sa, rstd: sa + N, N: N, H: H,
                                          scratch: lnScratch.pointer)
                    }
                    if allParameters, let G {
                        embeddingBackward(dwte: G + wteOff, dout: dResid.pointer, tokens: tok.baseAddress!, lengths: lens,
                                          rowScale: tdScale, maskToken: Int32(config.maskTokenId),
                                          zeroMask: config.tokenDropout, B: B, T: T, H: H, V: V)
                    }
                }
            }
        }
        return out
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

    /// The input of the linear map at `site` in the last forward, as the map saw it: LN_a's
    /// output for query/key/value, the attention heads' concatenated output for
    /// attention_output, LN_f's output for intermediate, the activation after GELU (after an
    /// `OutputScale` of that layer's intermediate) for output. (B,T,in) row-major, padding
    /// rows included (mask them by the batch lengths). Empty when out of range or no forward ran.
    public func input(at site: ModuleSite) -> [Float] {
        guard site.layer >= 0, site.layer < config.numHiddenLayers, B * T > 0 else { return [] }
        let N = B * T
        let (_, _, la, lf, _, _, _, ao, _, _, _, act) = cached(layer: site.layer, N: N)
        switch site.module {
        case .query, .key, .value: return copyOut(la, N * config.hiddenSize)
        case .attentionOutput: return copyOut(ao, N * config.hiddenSize)
        case .intermediate: return copyOut(lf, N * config.hiddenSize)
        case .output: return copyOut(act, N * config.intermediateSize)
        }
    }

    /// The output of the linear map at `site` in the last forward (after its `OutputScale`
    /// when one applied there): (B,T,out) row-major, padding rows included. For
    /// `intermediate` it is the activation after GELU (HF `EsmIntermediate` output). value and
    /// intermediate are always available; query, key, attention_output and output only when
    /// the forward's `ForwardHooks.capture` listed the site. Empty otherwise.
    public func output(at site: ModuleSite) -> [Float] {
        if let y = captured[site] { return y }
        guard site.layer >= 0, site.layer < config.numHiddenLayers, B * T > 0 else { return [] }
        let N = B * T
        let (_, _, _, _, _, _, v, _, _, _, _, act) = cached(layer: site.layer, N: N)
        switch site.module {
        case .value: return copyOut(v, N * config.hiddenSize)
        case .intermediate: return copyOut(act, N * config.intermediateSize)
        default: return []
        }
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
