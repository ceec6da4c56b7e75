import Foundation
import XCTest
@testable import ProteinData

/// The real data directory: `$KNEURON_SHARED_DATA`, else `<package root>/../shared/data`;
/// skips the test when neither exists.
func sharedData(_ relative: String, file: StaticString = #filePath) throws -> String {
    let fm = FileManager.default
    var candidates: [String] = []
    if let env = ProcessInfo.processInfo.environment["KNEURON_SHARED_DATA"], !env.isEmpty {
        candidates.append(env)
    }
    // #filePath = <root>/Tests/ProteinDataTests/TestSupport.swift
    let root = URL(fileURLWithPath: "\(file)").deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
    candidates.append(root.appendingPathComponent("../shared/data").standardized.path)
    for dir in candidates {
        let path = (dir as NSString).appendingPathComponent(relative)
        if fm.fileExists(atPath: path) { return path }
    }
    throw XCTSkip("real data file '\(relative)' not found in \(candidates.joined(separator: " or ")); set KNEURON_SHARED_DATA to the shared data directory")
}

/// A fresh temporary directory for inline fixtures.
final class TempDir {
    let url: URL
    init() throws {
        url = FileManager.default.temporaryDirectory
            .appendingPathComponent("proteindata-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(at: url) }

    /// Writes `bytes` to `name` and returns its path.
    func write(_ name: String, bytes: [UInt8]) throws -> String {
        let path = url.appendingPathComponent(name).path
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// Writes `text` as UTF-8 to `name` and returns its path.
    func write(_ name: String, _ text: String) throws -> String {
        try write(name, bytes: Array(text.utf8))
    }
}

/// Deterministic SplitMix64 generator for the fuzz tests.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Splits bytes into lines the simple way (independent of `TextFile`): LF, CRLF, CR; BOM dropped.
func simpleLines(_ bytes: [UInt8]) -> [String] {
    var b = bytes
    if b.starts(with: [0xEF, 0xBB, 0xBF]) { b.removeFirst(3) }
    let text = String(decoding: b, as: UTF8.self)
    return text.replacingOccurrences(of: "\r\n", with: "\n")
        .replacingOccurrences(of: "\r", with: "\n")
        .components(separatedBy: "\n")
}

func ec(_ s: String) -> ECNumber { try! ECNumber(s) }
