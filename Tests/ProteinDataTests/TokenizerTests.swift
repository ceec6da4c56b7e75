import Foundation
import XCTest
@testable import ProteinData

final class TokenizerTests: XCTestCase {
    func testAlphabet() {
        XCTAssertEqual(ESMAlphabet.tokens.count, 33)
        XCTAssertEqual(ESMAlphabet.tokens[Int(ESMAlphabet.mask)], "<mask>")
        XCTAssertEqual(ESMAlphabet.tokens[Int(ESMAlphabet.unk)], "<unk>")
        XCTAssertEqual(ESMAlphabet.tokenId(for: "L"), 4)
        XCTAssertEqual(ESMAlphabet.tokenId(for: "A"), 5)
        XCTAssertEqual(ESMAlphabet.tokenId(for: "C"), 23)
        XCTAssertEqual(ESMAlphabet.tokenId(for: "X"), 24)
        XCTAssertEqual(ESMAlphabet.tokenId(for: "O"), 28)
        XCTAssertNil(ESMAlphabet.tokenId(for: "a"))
        XCTAssertNil(ESMAlphabet.tokenId(for: "J"))
        XCTAssertNil(ESMAlphabet.tokenId(for: "-"))
        XCTAssertNil(ESMAlphabet.tokenId(for: "é"))
        let letters = "LAGVSERTIDPKQNFYMHWCXBUZO"
        XCTAssertEqual(letters.map { ESMAlphabet.tokenId(for: $0)! }, (4...28).map { Int32($0) })
    }

    func testEncodeWithoutCrop() throws {
        let t = try Tokenizer(maxLength: 10, cropPolicy: .reject).encode("MKTAYIAK")
        XCTAssertEqual(t.ids, [0, 20, 15, 11, 5, 19, 12, 5, 15, 2])
        XCTAssertEqual(t.residueStart, 0)
        XCTAssertEqual(t.residueEnd, 8)
        XCTAssertEqual(t.originalLength, 8)
        XCTAssertFalse(t.cropped)
        XCTAssertEqual(try Tokenizer(maxLength: 3, cropPolicy: .head).encode("").ids, [0, 2])
    }

    func testCropPolicies() throws {
        let seq = "LAGVSERTID"   // ids 4...13
        let head = try Tokenizer(maxLength: 6, cropPolicy: .head).encode(seq)
        XCTAssertEqual(head.ids, [0, 4, 5, 6, 7, 2])
        XCTAssertEqual([head.residueStart, head.residueEnd, head.originalLength], [0, 4, 10])
        XCTAssertTrue(head.cropped)
        let center = try Tokenizer(maxLength: 6, cropPolicy: .center).encode(seq)
        XCTAssertEqual(center.ids, [0, 7, 8, 9, 10, 2])
        XCTAssertEqual([center.residueStart, center.residueEnd], [3, 7])
        let odd = try Tokenizer(maxLength: 5, cropPolicy: .center).encode(seq)   // 3 of 10: start 3
        XCTAssertEqual(odd.ids, [0, 7, 8, 9, 2])
        XCTAssertThrowsError(try Tokenizer(maxLength: 6, cropPolicy: .reject).encode(seq)) { error in
            XCTAssertEqual(error as? ProteinDataError, .tooLong(length: 10, maxResidues: 4))
        }
        XCTAssertEqual(try Tokenizer(maxLength: 12, cropPolicy: .reject).encode(seq).ids.count, 12)
    }

    func testErrors() {
        XCTAssertThrowsError(try Tokenizer(maxLength: 100, cropPolicy: .head).encode("MKJT")) { error in
            XCTAssertEqual(error as? ProteinDataError, .unknownResidue(letter: "J", position: 3))
            XCTAssertTrue("\(error)".hasPrefix("unknown residue 'J' at position 3;"), "\(error)")
        }
        XCTAssertThrowsError(try Tokenizer(maxLength: 4, cropPolicy: .head).encode("MKTAYk")) { error in
            XCTAssertEqual(error as? ProteinDataError, .unknownResidue(letter: "k", position: 6))
        }
        XCTAssertThrowsError(try Tokenizer(maxLength: 2, cropPolicy: .head).encode("M")) { error in
            XCTAssertEqual(error as? ProteinDataError, .invalidMaxLength(2))
        }
    }
}
