import Foundation

/// The ESM-2 vocabulary (33 tokens), exactly as fair-esm / HuggingFace `EsmTokenizer`
/// (REFERENCE.md section 2): `<cls>`=0 `<pad>`=1 `<eos>`=2 `<unk>`=3, residues 4...28,
/// `.`=29 `-`=30 `<null_1>`=31 `<mask>`=32.
public enum ESMAlphabet {
    /// The 33 tokens in id order.
    public static let tokens: [String] = [
        "<cls>", "<pad>", "<eos>", "<unk>",
        "L", "A", "G", "V", "S", "E", "R", "T", "I", "D", "P", "K", "Q", "N", "F", "Y", "M", "H", "W", "C",
        "X", "B", "U", "Z", "O", ".", "-", "<null_1>", "<mask>",
    ]
    /// Ids of the special tokens `<cls>` (0), `<pad>` (1), `<eos>` (2), `<unk>` (3) and `<mask>` (32).
    public static let cls: Int32 = 0, pad: Int32 = 1, eos: Int32 = 2, unk: Int32 = 3, mask: Int32 = 32

    /// Lookup table from an ASCII byte to a residue token id, -1 when not a residue letter.
    static let table: [Int32] = {
        var t = [Int32](repeating: -1, count: 256)
        for (i, tok) in tokens.enumerated() where tok.count == 1 {
            let b = tok.utf8.first!
            if b >= UInt8(ascii: "A") && b <= UInt8(ascii: "Z") { t[Int(b)] = Int32(i) }
        }
        return t
    }()

    /// The token id of an uppercase residue letter (L A G V S E R T I D P K Q N F Y M H W C X B U Z O);
    /// nil for anything else (lowercase letters, gaps, special tokens).
    public static func tokenId(for residue: Character) -> Int32? {
        guard let a = residue.asciiValue else { return nil }
        let id = table[Int(a)]
        return id >= 0 ? id : nil
    }
}

/// What `Tokenizer` does with a sequence longer than `maxLength - 2` residues.
public enum CropPolicy: String, Codable, Sendable, CaseIterable {
    /// Keep the first `maxLength - 2` residues.
    case head
    /// Keep the middle `maxLength - 2` residues (start = (length - kept) / 2, rounded down).
    case center
    /// Throw `ProteinDataError.tooLong`.
    case reject
}

/// A sequence encoded as ESM-2 token ids: `<cls>`, the kept residues, `<eos>`.
///
/// `ids.count == residueEnd - residueStart + 2`; `residueStart`/`residueEnd` are 0-based
/// indices into the original sequence (end exclusive), so token `t` (1...kept) is residue
/// `residueStart + t - 1`.
public struct TokenizedSequence: Sendable, Equatable {
    /// Token ids: `<cls>`, the kept residues, `<eos>` (`residueEnd - residueStart + 2` values).
    public var ids: [Int32]
    /// 0-based index of the first kept residue in the original sequence.
    public var residueStart: Int
    /// 0-based exclusive end of the kept residues in the original sequence.
    public var residueEnd: Int
    /// Residues in the original, uncropped sequence.
    public var originalLength: Int
    /// True when residues were dropped.
    public var cropped: Bool { residueEnd - residueStart < originalLength }

    /// Creates a tokenized sequence from its fields (not checked).
    public init(ids: [Int32], residueStart: Int, residueEnd: Int, originalLength: Int) {
        self.ids = ids
        self.residueStart = residueStart
        self.residueEnd = residueEnd
        self.originalLength = originalLength
    }
}

/// Encodes residue strings for ESM-2 (`<cls> residues <eos>`, no padding).
public struct Tokenizer: Sendable {
    /// Tokens per sequence including `<cls>` and `<eos>` (ESM-2: at most 1026).
    public let maxLength: Int
    /// What `encode` does with a sequence longer than `maxLength - 2` residues.
    public let cropPolicy: CropPolicy

    /// `maxLength` counts `<cls>` and `<eos>` and must be >= 3 (checked by `encode`, which throws
    /// `.invalidMaxLength` otherwise).
    public init(maxLength: Int, cropPolicy: CropPolicy) {
        self.maxLength = maxLength
        self.cropPolicy = cropPolicy
    }

    /// Residues that fit: `maxLength - 2`.
    public var maxResidues: Int { maxLength - 2 }

    /// Encodes `sequence` (uppercase residue letters).
    ///
    /// Every residue is checked, including cropped ones. If the sequence has more than
    /// `maxLength - 2` residues it is cropped by `cropPolicy`, keeping `<cls>` and `<eos>`.
    /// - Throws: `.invalidMaxLength` (maxLength < 3), `.unknownResidue(letter, 1-based position)`,
    ///   `.tooLong` when the policy is `reject`.
    public func encode(_ sequence: String) throws -> TokenizedSequence {
        guard maxLength >= 3 else { throw ProteinDataError.invalidMaxLength(maxLength) }
        var residues: [Int32] = []
        residues.reserveCapacity(sequence.utf8.count)
        var position = 0
        for scalar in sequence.unicodeScalars {
            position += 1
            let id: Int32 = scalar.isASCII ? ESMAlphabet.table[Int(scalar.value)] : -1
            guard id >= 0 else {
                throw ProteinDataError.unknownResidue(letter: String(Character(scalar)), position: position)
            }
            residues.append(id)
        }
        let n = residues.count
        var start = 0, end = n
        if n > maxResidues {
            switch cropPolicy {
            case .head: end = maxResidues
            case .center:
                start = (n - maxResidues) / 2
                end = start + maxResidues
            case .reject: throw ProteinDataError.tooLong(length: n, maxResidues: maxResidues)
            }
        }
        var ids: [Int32] = [ESMAlphabet.cls]
        ids.reserveCapacity(end - start + 2)
        ids.append(contentsOf: residues[start..<end])
        ids.append(ESMAlphabet.eos)
        return TokenizedSequence(ids: ids, residueStart: start, residueEnd: end, originalLength: n)
    }
}
