import Foundation
import XCTest
@testable import ProteinData

final class ECNumberTests: XCTestCase {
    func testParsingAndCanonicalText() throws {
        XCTAssertEqual(try ECNumber("1.1.1.1").levels, ["1", "1", "1", "1"])
        XCTAssertEqual(try ECNumber("3.4.-.-").levels, ["3", "4", nil, nil])
        XCTAssertEqual(try ECNumber("3.4.21").description, "3.4.21.-")
        XCTAssertEqual(try ECNumber("3").description, "3.-.-.-")
        XCTAssertEqual(try ECNumber("4.2.2.n1").levels, ["4", "2", "2", "n1"])
        XCTAssertEqual(try ECNumber("3.2.1.B3").description, "3.2.1.B3")
        XCTAssertEqual(try ECNumber(" EC 2.7.11.01 ").description, "2.7.11.1")
        XCTAssertEqual(try ECNumber("-.-.-.-").ecClass, nil)
        XCTAssertEqual(try ECNumber("7.1.1.1").ecClass, 7)
        XCTAssertTrue(try ECNumber("4.2.2.n1").isPreliminary)
        XCTAssertFalse(try ECNumber("3.2.1.B3").isPreliminary)
        XCTAssertEqual(try ECNumber("3.4.21").knownDepth, 3)
    }

    func testInvalidTextThrows() {
        for bad in ["1.2.x.y.z", "", "1.2.3.4.5", "8.1.1.1", "0.1.1.1", "1..1.1", "3.-.1.1", "1.2.n3.4",
                    "n1.1.1.1", "1.1.1.n", "1.1.1.1 2", "abc", "1.1.1.-1", "1.1.1.+1", "1.1.1.٣"] {
            XCTAssertThrowsError(try ECNumber(bad), bad) { error in
                XCTAssertEqual(error as? ProteinDataError, .invalidEC(text: bad, where: "parsing"))
            }
        }
    }

    func testTruncation() throws {
        let e = try ECNumber("1.14.13.39")
        XCTAssertEqual(e.truncated(toLevel: 1).description, "1.-.-.-")
        XCTAssertEqual(e.truncated(toLevel: 2).description, "1.14.-.-")
        XCTAssertEqual(e.truncated(toLevel: 3).description, "1.14.13.-")
        XCTAssertEqual(e.truncated(toLevel: 4), e)
        XCTAssertEqual(e.truncated(toLevel: 0).description, "-.-.-.-")
        XCTAssertEqual(try ECNumber("3.4.21").truncated(toLevel: 4).description, "3.4.21.-")
        XCTAssertEqual(try ECNumber("3.4.21").truncated(toLevel: 2), try ECNumber("3.4.-.-"))
    }

    func testOrderingHashingAndCodable() throws {
        let sorted = ["3.4.21.10", "3.4.21.9", "3.4.-.-", "1.1.1.1", "3.2.1.B3", "3.2.1.n1", "3.2.1.200", "3.4.21.-"]
            .map { ec($0) }.sorted()
        XCTAssertEqual(sorted.map(\.description),
                       ["1.1.1.1", "3.2.1.200", "3.2.1.B3", "3.2.1.n1", "3.4.-.-", "3.4.21.-", "3.4.21.9", "3.4.21.10"])
        XCTAssertEqual(Set([ec("3.4.21"), ec("3.4.21.-"), ec("3.4.21.1")]).count, 2)
        let data = try JSONEncoder().encode([ec("4.2.2.n1"), ec("3.4")])
        XCTAssertEqual(String(decoding: data, as: UTF8.self), "[\"4.2.2.n1\",\"3.4.-.-\"]")
        XCTAssertEqual(try JSONDecoder().decode([ECNumber].self, from: data), [ec("4.2.2.n1"), ec("3.4.-.-")])
        XCTAssertThrowsError(try JSONDecoder().decode([ECNumber].self, from: Data("[\"1.x\"]".utf8)))
    }
}

final class ECNumberLevelsInitTests: XCTestCase {
    func testInitFromLevels() throws {
        XCTAssertEqual(try ECNumber(levels: ["3", "4", nil, nil]).description, "3.4.-.-")
        XCTAssertEqual(try ECNumber(levels: ["3", "4"]).description, "3.4.-.-")
        XCTAssertThrowsError(try ECNumber(levels: ["1", "1", "1", "1", "1"]))
        XCTAssertThrowsError(try ECNumber(levels: []))
        XCTAssertThrowsError(try ECNumber(levels: [nil, "1"]))
    }
}
