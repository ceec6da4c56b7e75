import Foundation
import XCTest
@testable import ESM

/// Paths of the PyTorch reference fixtures (scripts/reference/make_fixtures.py).
enum Fixture {
    /// `Tests/ESMTests/Fixtures/tiny-esm` inside the test bundle.
    static var tinyESM: URL {
        Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.appendingPathComponent("tiny-esm")
    }
}

/// A fresh temporary directory, removed when the test ends.
func temporaryDirectory(_ test: XCTestCase) throws -> URL {
    let url = FileManager.default.temporaryDirectory
        .appendingPathComponent("kneuron-esm-tests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(at: url) }
    return url
}

/// Runs `body`, asserting that it throws an error of type `E`, and returns that error.
func assertThrows<E: Error, T>(_ expected: E.Type, file: StaticString = #filePath, line: UInt = #line,
                               _ body: () throws -> T) -> E? {
    do {
        _ = try body()
        XCTFail("expected \(E.self), nothing was thrown", file: file, line: line)
    } catch let e as E {
        return e
    } catch {
        XCTFail("expected \(E.self), got \(type(of: error)): \(error)", file: file, line: line)
    }
    return nil
}
