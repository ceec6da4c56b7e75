import Foundation
import XCTest
@testable import ESM

final class SafeTensorsTests: XCTestCase {
    // Values read in Python from the fixture (safe_open(...).get_tensor(name)[index].item(),
    // and .float() of the F16/BF16 copies): (name, flat index, F32, F16, BF16).
    static let pythonValues: [(String, Int, Double, Double, Double)] = [
        ("esm.embeddings.word_embeddings.weight", 5 * 32 + 7, -0.027861563488841057, -0.027862548828125, -0.02783203125),
        ("esm.encoder.layer.1.attention.self.key.weight", 3 * 32 + 17, 0.31657955050468445, 0.316650390625, 0.31640625),
        ("esm.encoder.layer.0.LayerNorm.gamma", 4, 0.9724313616752625, 0.97265625, 0.97265625),
        ("esm.encoder.layer.1.attention.LayerNorm.beta", 31, 0.06391388177871704, 0.06390380859375, 0.06396484375),
        ("classifier.out_proj.bias", 6, 0.08274035155773163, 0.082763671875, 0.08251953125),
        ("esm.encoder.emb_layer_norm_after.weight", 0, 1.0548696517944336, 1.0546875, 1.0546875),
        ("esm.encoder.layer.0.intermediate.dense.weight", 63 * 32 + 31, -0.039312660694122314, -0.039306640625, -0.039306640625),
    ]

    func testReadsFixtureHeaderAndRawValues() throws {
        let file = try SafeTensorsFile(path: Fixture.tinyESM.appendingPathComponent("model.safetensors").path)
        XCTAssertEqual(file.tensors.count, 42)
        XCTAssertEqual(file.metadata, ["format": "pt"])
        let emb = try XCTUnwrap(file.tensors["esm.embeddings.word_embeddings.weight"])
        XCTAssertEqual(emb.dtype, "F32")
        XCTAssertEqual(emb.shape, [33, 32])
        XCTAssertEqual(emb.byteRange.count, 33 * 32 * 4)
        XCTAssertEqual(file.tensors["classifier.out_proj.weight"]?.shape, [7, 32])
        for (name, index, f32, _, _) in Self.pythonValues {
            let values = try file.floats(name)
            XCTAssertEqual(values[index], Float(f32), name)
        }
        // transformers 5.24 writes this literal name; the loader skips it.
        let invFreq = try file.floats("esm.encoder.layer.*.attention.self.rotary_embeddings.inv_freq")
        XCTAssertEqual(invFreq, [1, 0.1, 0.01, 0.001].map { Float($0) })
    }

    func testReadsF16AndBF16Copies() throws {
        let dir = Fixture.tinyESM
        let f32 = try SafeTensorsFile(path: dir.appendingPathComponent("model.safetensors").path)
        let f16 = try SafeTensorsFile(path: dir.appendingPathComponent("model-f16.safetensors").path)
        let bf16 = try SafeTensorsFile(path: dir.appendingPathComponent("model-bf16.safetensors").path)
        XCTAssertEqual(f16.tensors["classifier.dense.weight"]?.dtype, "F16")
        XCTAssertEqual(bf16.tensors["classifier.dense.weight"]?.dtype, "BF16")
        for (name, index, _, half, brain) in Self.pythonValues {
            XCTAssertEqual(try f16.floats(name)[index], Float(half), name)
            XCTAssertEqual(try bf16.floats(name)[index], Float(brain), name)
        }
        // Whole files: within half an ulp of each format (relative 2^-11 and 2^-8).
        var worst16: Float = 0, worstBF: Float = 0
        for name in f32.tensors.keys {
            let exact = try f32.floats(name), a = try f16.floats(name), b = try bf16.floats(name)
            for i in exact.indices {
                let scale = max(abs(exact[i]), 0x1p-14)
                worst16 = max(worst16, abs(a[i] - exact[i]) / scale)
                worstBF = max(worstBF, abs(b[i] - exact[i]) / max(abs(exact[i]), 1e-30))
            }
        }
        print("F16 max relative error \(worst16), BF16 max relative error \(worstBF)")
        XCTAssertLessThanOrEqual(worst16, 1.0 / 2048)
        XCTAssertLessThanOrEqual(worstBF, 1.0 / 256)
        XCTAssertGreaterThan(worstBF, 0)
    }

    func testHalfConversionSpecialValues() {
        XCTAssertEqual(halfToFloat(0x3c00), 1)
        XCTAssertEqual(halfToFloat(0xc000), -2)
        XCTAssertEqual(halfToFloat(0x7bff), 65504)
        XCTAssertEqual(halfToFloat(0x0001), Float(sign: .plus, exponent: -24, significand: 1))
        XCTAssertEqual(halfToFloat(0x8000).sign, .minus)
        XCTAssertEqual(halfToFloat(0x7c00), .infinity)
        XCTAssertTrue(halfToFloat(0x7e00).isNaN)
    }

    func testWriterRoundTripIsExactAndPadsHeader() throws {
        let dir = try temporaryDirectory(self)
        let path = dir.appendingPathComponent("t.safetensors").path
        let a: [Float] = [1, -2.5, .pi, 1e-30, -0.0, 3.4e38]
        let b: [Float] = (0 ..< 12).map { Float($0) * 0.37 - 1 }
        try SafeTensorsWriter.write([("a \"quoted\" name", [2, 3], a), ("b", [3, 4], b), ("scalar", [], [7])],
                                    metadata: ["format": "pt", "note": "line\nbreak"], to: path)
        let file = try SafeTensorsFile(path: path)
        XCTAssertEqual(file.metadata, ["format": "pt", "note": "line\nbreak"])
        XCTAssertEqual(try file.floats("a \"quoted\" name").map(\.bitPattern), a.map(\.bitPattern))
        XCTAssertEqual(try file.floats("b"), b)
        XCTAssertEqual(try file.floats("scalar"), [7])
        XCTAssertEqual(file.tensors["b"]?.shape, [3, 4])
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        let n = bytes.withUnsafeBytes { Int(UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self))) }
        XCTAssertEqual(n % 8, 0)
        XCTAssertEqual(bytes.count, 8 + n + 4 * (6 + 12 + 1))
        XCTAssertEqual(file.tensors["a \"quoted\" name"]?.byteRange, 8 + n ..< 8 + n + 24)
        // No temporary file is left behind by the atomic write.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["t.safetensors"])
    }

    func testWriterRejectsBadInput() throws {
        let path = try temporaryDirectory(self).appendingPathComponent("t.safetensors").path
        let dup = assertThrows(SafeTensorsError.self) {
            try SafeTensorsWriter.write([("x", [1], [1]), ("x", [1], [2])], metadata: [:], to: path)
        }
        XCTAssertEqual(dup, .duplicateName(path: path, name: "x"))
        let count = assertThrows(SafeTensorsError.self) {
            try SafeTensorsWriter.write([("x", [2, 2], [1, 2, 3])], metadata: [:], to: path)
        }
        XCTAssertEqual(count, .shapeByteMismatch(path: path, tensor: "x", shape: [2, 2], dtype: "F32", expectedBytes: 16, foundBytes: 12))
        XCTAssertFalse(FileManager.default.fileExists(atPath: path))
    }

    // MARK: - Malformed files, built from bytes

    /// A safetensors image: 8-byte length (or `claimedLength`), `header`, then `data`.
    private func image(_ header: String, data: [UInt8], claimedLength: UInt64? = nil) -> Data {
        let h = Array(header.utf8)
        var out = Data()
        withUnsafeBytes(of: (claimedLength ?? UInt64(h.count)).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: h)
        out.append(contentsOf: data)
        return out
    }

    /// Writes `bytes` to a file and opens it, expecting a `SafeTensorsError`.
    private func openError(_ bytes: Data, file: StaticString = #filePath, line: UInt = #line) throws -> (SafeTensorsError?, String) {
        let path = try temporaryDirectory(self).appendingPathComponent("bad.safetensors").path
        try bytes.write(to: URL(fileURLWithPath: path))
        let error = assertThrows(SafeTensorsError.self, file: file, line: line) { try SafeTensorsFile(path: path) }
        if let error { XCTAssertTrue(error.description.hasPrefix(path), "message names the file: \(error)", file: file, line: line) }
        return (error, path)
    }

    private let eightBytes = [UInt8](repeating: 0, count: 8)

    func testTruncatedFiles() throws {
        let (short, p1) = try openError(Data([1, 2, 3]))
        XCTAssertEqual(short, .truncated(path: p1, fileSize: 3))
        // A valid file cut 4 bytes short: the last tensor no longer fits.
        let valid = image(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, data: eightBytes)
        let (cut, p2) = try openError(valid.dropLast(4))
        XCTAssertEqual(cut, .offsetsOutOfRange(path: p2, tensor: "a", begin: 0, end: 8, dataSize: 4))
    }

    func testHeaderLengthBeyondFile() throws {
        let bytes = image(#"{}"#, data: [], claimedLength: 1000)
        let (e, p) = try openError(bytes)
        XCTAssertEqual(e, .headerLengthBeyondFile(path: p, headerLength: 1000, fileSize: 10))
    }

    func testHeaderNotJSON() throws {
        let (e, p) = try openError(image(#"{"a":{"dtype":"F32",,}}"#, data: []))
        guard case .headerNotJSON(let path, let offset, _) = e else { return XCTFail("\(String(describing: e))") }
        XCTAssertEqual(path, p)
        XCTAssertEqual(offset, 8 + 20)  // the second comma
        let (top, _) = try openError(image(#"[1, 2]"#, data: []))
        guard case .headerNotJSON = top else { return XCTFail("\(String(describing: top))") }
    }

    func testUnknownDtype() throws {
        let (e, p) = try openError(image(#"{"a":{"dtype":"F17","shape":[2],"data_offsets":[0,8]}}"#, data: eightBytes))
        XCTAssertEqual(e, .unknownDtype(path: p, tensor: "a", dtype: "F17"))
    }

    func testMissingField() throws {
        let (e, p) = try openError(image(#"{"a":{"dtype":"F32","data_offsets":[0,8]}}"#, data: eightBytes))
        XCTAssertEqual(e, .missingField(path: p, tensor: "a", field: "shape"))
    }

    func testOffsetsOutOfRange() throws {
        let (e, p) = try openError(image(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#, data: eightBytes))
        XCTAssertEqual(e, .offsetsOutOfRange(path: p, tensor: "a", begin: 4, end: 12, dataSize: 8))
        let (reversed, p2) = try openError(image(#"{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}"#, data: eightBytes))
        XCTAssertEqual(reversed, .offsetsOutOfRange(path: p2, tensor: "a", begin: 8, end: 0, dataSize: 8))
    }

    func testOverlappingOffsets() throws {
        let header = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#
        let (e, p) = try openError(image(header, data: eightBytes + [0, 0, 0, 0]))
        XCTAssertEqual(e, .overlappingOffsets(path: p, tensor: "b", other: "a", begin: 4, otherEnd: 8))
    }

    func testShapeByteMismatch() throws {
        let (e, p) = try openError(image(#"{"a":{"dtype":"F16","shape":[2,3],"data_offsets":[0,8]}}"#, data: eightBytes))
        XCTAssertEqual(e, .shapeByteMismatch(path: p, tensor: "a", shape: [2, 3], dtype: "F16", expectedBytes: 12, foundBytes: 8))
    }

    func testDuplicateName() throws {
        let header = #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#
        let (e, p) = try openError(image(header, data: eightBytes))
        XCTAssertEqual(e, .duplicateName(path: p, name: "a"))
    }

    func testNonFloatAndMissingTensorReads() throws {
        let path = try temporaryDirectory(self).appendingPathComponent("i.safetensors").path
        try image(#"{"ids":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}   "#, data: eightBytes)
            .write(to: URL(fileURLWithPath: path))
        let file = try SafeTensorsFile(path: path)
        XCTAssertEqual(file.tensors["ids"]?.dtype, "I64")
        XCTAssertEqual(assertThrows(SafeTensorsError.self) { try file.floats("ids") },
                       .notFloat(path: path, tensor: "ids", dtype: "I64"))
        XCTAssertEqual(assertThrows(SafeTensorsError.self) { try file.floats("nope") },
                       .noSuchTensor(path: path, name: "nope"))
    }

    // MARK: - more malformed headers (issue 3): each gives its clear error, never a crash

    func testHugeHeaderLengthsDoNotOverflow() throws {
        for claimed: UInt64 in [UInt64.max, 1 << 63, UInt64(Int.max)] {
            let (e, p) = try openError(image(#"{}"#, data: [], claimedLength: claimed))
            XCTAssertEqual(e, .headerLengthBeyondFile(path: p, headerLength: claimed, fileSize: 10))
        }
    }

    func testEmptyAndNonTextHeaders() throws {
        let (empty, _) = try openError(image("", data: []))
        guard case .headerNotJSON = empty else { return XCTFail("\(String(describing: empty))") }
        var bytes = image(#"{"a":1}"#, data: [])
        bytes[8] = 0xFF   // not UTF-8, not JSON
        let (binary, p) = try openError(bytes)
        guard case .headerNotJSON(let path, let offset, _) = binary else { return XCTFail("\(String(describing: binary))") }
        XCTAssertEqual(path, p)
        XCTAssertEqual(offset, 8)
        let (cut, _) = try openError(image(#"{"a":{"dtype":"F32","shape":[2],"data_o"#, data: []))
        guard case .headerNotJSON = cut else { return XCTFail("\(String(describing: cut))") }
    }

    func testBadFieldValues() throws {
        let cases: [(String, String)] = [
            (#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[-4,4]}}"#, "data_offsets"),
            (#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8.5]}}"#, "data_offsets"),
            (#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4,8]}}"#, "data_offsets"),
            (#"{"a":{"dtype":"F32","shape":[2],"data_offsets":"0-8"}}"#, "data_offsets"),
            (#"{"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,8]}}"#, "shape"),
            (#"{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#, "shape"),
            (#"{"a":{"dtype":32,"shape":[2],"data_offsets":[0,8]}}"#, "dtype"),
            (#"{"a":[0,8]}"#, "(entry)"),
            (#"{"__metadata__":{"format":1},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, "format"),
            (#"{"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]}}"#, "shape"),
        ]
        for (header, field) in cases {
            let (e, p) = try openError(image(header, data: eightBytes))
            guard case .badField(let path, _, let f, let detail) = e else { XCTFail("\(header): \(String(describing: e))"); continue }
            XCTAssertEqual(path, p)
            XCTAssertEqual(f, field, header)
            XCTAssertFalse(detail.isEmpty)
        }
    }

    func testContainedRangeOverlapsAndEmptyTensorsDoNot() throws {
        // b lies inside a; c starts where a ends: b is reported against a.
        let header = #"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"c":{"dtype":"F32","shape":[1],"data_offsets":[16,20]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#
        let (e, p) = try openError(image(header, data: [UInt8](repeating: 0, count: 20)))
        XCTAssertEqual(e, .overlappingOffsets(path: p, tensor: "b", other: "a", begin: 4, otherEnd: 16))
        // Zero-size tensors at any in-range offset occupy no bytes.
        let path = try temporaryDirectory(self).appendingPathComponent("empty.safetensors").path
        try image(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"e":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}}"#,
                  data: eightBytes).write(to: URL(fileURLWithPath: path))
        let file = try SafeTensorsFile(path: path)
        XCTAssertEqual(try file.floats("e"), [])
        XCTAssertEqual(try file.floats("a"), [0, 0])
    }
}
