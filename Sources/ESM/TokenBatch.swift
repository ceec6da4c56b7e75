/// A batch of tokenised sequences, right-padded to the longest row.
///
/// Each sequence is `<cls> residues <eos>` in ESM-2 token ids (REFERENCE.md section 2);
/// the batch does not check ids (the model zeroes the embedding of an id outside the
/// vocabulary; use `ESMClassifier.check(_:)` to reject such batches).
public struct TokenBatch: Sendable, Equatable {
    /// Number of rows B.
    public let batchSize: Int
    /// Tokens per row T = the longest row's length.
    public let length: Int
    /// Token ids (B,T) row-major, right-padded with the pad id.
    public let tokens: [Int32]
    /// Non-pad tokens per row (B), `<cls>`/`<eos>` included.
    public let lengths: [Int]

    /// Pads `sequences` with `padTokenId` to the longest one.
    public init(sequences: [[Int32]], padTokenId: Int32 = 1) {
        batchSize = sequences.count
        length = sequences.map(\.count).max() ?? 0
        lengths = sequences.map(\.count)
        var t = [Int32](repeating: padTokenId, count: batchSize * length)
        for (b, s) in sequences.enumerated() {
            for (i, id) in s.enumerated() { t[b * length + i] = id }
        }
        tokens = t
    }
}
