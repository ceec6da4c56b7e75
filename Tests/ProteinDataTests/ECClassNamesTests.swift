import Foundation
import XCTest
@testable import ProteinData

final class ECClassNamesTests: XCTestCase {
    func testBuiltin() {
        let names = ECClassNames()
        XCTAssertEqual(ECClassNames.builtinClassNames.count, 7)
        XCTAssertEqual(names.name(for: ec("1.1.1.1")), "Oxidoreductases")
        XCTAssertEqual(names.name(for: ec("7.1.1.1")), "Translocases")
        XCTAssertNil(names.name(for: ec("-.-.-.-")))
    }

    func testInlineFile() throws {
        let dir = try TempDir()
        let path = try dir.write("enzclass.txt", """
        ----
        Release:     10-Feb-2021

        1. -. -.-  Oxidoreductases.
        1. 1. -.-   Acting on the CH-OH group of donors.
        1. 1. 1.-    With NAD(+) or NADP(+) as acceptor.
        1. 1.98.-    With other, known, acceptors.
        """)
        let names = try ECClassNames(enzclassPath: path)
        XCTAssertEqual(names.names.count, 4 + 6)   // 4 parsed + classes 2...7 built in
        XCTAssertEqual(names.name(for: ec("1.1.1.27")), "With NAD(+) or NADP(+) as acceptor")
        XCTAssertEqual(names.name(for: ec("1.1.98.2")), "With other, known, acceptors")
        XCTAssertEqual(names.name(for: ec("1.1.5.1")), "Acting on the CH-OH group of donors")
        XCTAssertEqual(names.name(for: ec("1.2")), "Oxidoreductases")
        XCTAssertEqual(names.name(for: ec("3.1.1.1")), "Hydrolases")
        let junk = try dir.write("junk.txt", "hello\n")
        XCTAssertThrowsError(try ECClassNames(enzclassPath: junk)) { error in
            guard case .malformedFile? = error as? ProteinDataError else { return XCTFail("\(error)") }
        }
    }
}
