import Foundation

// safetensors reader and writer.
//
// Format (https://github.com/huggingface/safetensors, README "Format"):
//   8 bytes   N, unsigned little-endian 64-bit: the header length in bytes
//   N bytes   a UTF-8 JSON object: {"__metadata__": {str: str}?,
//             name: {"dtype": "F32", "shape": [d0, d1, ...], "data_offsets": [begin, end]}, ...}
//             possibly padded with trailing spaces
//   rest      the byte buffer; data_offsets are relative to its start, end exclusive;
//             values are little-endian, row-major.
// The Rust implementation pads the header with spaces to a multiple of 8 bytes; the writer
// here does the same.

/// A malformed or unusable safetensors file. Every case names the file and, where there is
/// one, the tensor and the byte offset concerned.
public enum SafeTensorsError: Error, CustomStringConvertible, Equatable {
    /// The file could not be read or written (`detail` is the system's message).
    case io(path: String, detail: String)
    /// The file is shorter than the 8-byte header length.
    case truncated(path: String, fileSize: Int)
    /// The 8-byte header length points past the end of the file.
    case headerLengthBeyondFile(path: String, headerLength: UInt64, fileSize: Int)
    /// The header is not a JSON object; `offset` is the byte offset in the file.
    case headerNotJSON(path: String, offset: Int, detail: String)
    /// A tensor entry lacks `dtype`, `shape` or `data_offsets`.
    case missingField(path: String, tensor: String, field: String)
    /// A header field has the wrong type or an impossible value.
    case badField(path: String, tensor: String, field: String, detail: String)
    /// The dtype is not one the safetensors format defines.
    case unknownDtype(path: String, tensor: String, dtype: String)
    /// `product(shape) * size(dtype)` differs from the byte length given by `data_offsets`.
    case shapeByteMismatch(path: String, tensor: String, shape: [Int], dtype: String, expectedBytes: Int, foundBytes: Int)
    /// `data_offsets` are reversed or reach past the end of the data buffer.
    case offsetsOutOfRange(path: String, tensor: String, begin: Int, end: Int, dataSize: Int)
    /// Two tensors share bytes of the data buffer (offsets relative to the buffer).
    case overlappingOffsets(path: String, tensor: String, other: String, begin: Int, otherEnd: Int)
    /// The same tensor name occurs twice in one header (or twice in a writer's input).
    case duplicateName(path: String, name: String)
    /// The file has no tensor of that name.
    case noSuchTensor(path: String, name: String)
    /// The tensor's dtype cannot be converted to Float32 (integer or boolean data).
    case notFloat(path: String, tensor: String, dtype: String)

    public var description: String {
        switch self {
        case .io(let path, let detail):
            return "\(path): cannot access the file: \(detail)"
        case .truncated(let path, let size):
            return "\(path): file is \(size) bytes, shorter than the 8-byte safetensors header length; the file is truncated or not safetensors"
        case .headerLengthBeyondFile(let path, let n, let size):
            return "\(path): header length \(n) bytes (bytes 0-7) reaches past the end of the \(size)-byte file; the file is truncated or not safetensors"
        case .headerNotJSON(let path, let offset, let detail):
            return "\(path): header is not a JSON object (at byte \(offset)): \(detail)"
        case .missingField(let path, let tensor, let field):
            return "\(path): tensor '\(tensor)' has no '\(field)' in the header"
        case .badField(let path, let tensor, let field, let detail):
            return "\(path): tensor '\(tensor)': field '\(field)' \(detail)"
        case .unknownDtype(let path, let tensor, let dtype):
            return "\(path): tensor '\(tensor)' has unknown dtype '\(dtype)' (known: \(SafeTensorsDType.allCases.map(\.rawValue).joined(separator: " ")))"
        case .shapeByteMismatch(let path, let tensor, let shape, let dtype, let expected, let found):
            return "\(path): tensor '\(tensor)' of shape \(shape) and dtype \(dtype) needs \(expected) bytes but data_offsets span \(found) bytes"
        case .offsetsOutOfRange(let path, let tensor, let begin, let end, let dataSize):
            return "\(path): tensor '\(tensor)' data_offsets [\(begin), \(end)] do not fit the \(dataSize)-byte data buffer; the file is truncated or its header is wrong"
        case .overlappingOffsets(let path, let tensor, let other, let begin, let otherEnd):
            return "\(path): tensor '\(tensor)' starts at data byte \(begin), inside tensor '\(other)' which ends at data byte \(otherEnd); tensors must not overlap"
        case .duplicateName(let path, let name):
            return "\(path): tensor name '\(name)' occurs more than once"
        case .noSuchTensor(let path, let name):
            return "\(path): no tensor named '\(name)'"
        case .notFloat(let path, let tensor, let dtype):
            return "\(path): tensor '\(tensor)' has dtype \(dtype), which is not a floating-point type (F64, F32, F16, BF16)"
        }
    }
}

/// The element types of the safetensors format and their sizes in bytes.
public enum SafeTensorsDType: String, CaseIterable, Sendable {
    case bool = "BOOL", u8 = "U8", i8 = "I8", f8e5m2 = "F8_E5M2", f8e4m3 = "F8_E4M3"
    case i16 = "I16", u16 = "U16", f16 = "F16", bf16 = "BF16"
    case i32 = "I32", u32 = "U32", f32 = "F32"
    case i64 = "I64", u64 = "U64", f64 = "F64"

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .bool, .u8, .i8, .f8e5m2, .f8e4m3: return 1
        case .i16, .u16, .f16, .bf16: return 2
        case .i32, .u32, .f32: return 4
        case .i64, .u64, .f64: return 8
        }
    }
}

/// One tensor's header entry.
public struct SafeTensorInfo: Sendable, Equatable {
    /// The tensor's name, as stored.
    public let name: String
    /// The safetensors dtype string (`F32`, `F16`, `BF16`, `I64`, ...).
    public let dtype: String
    /// Row-major shape; `[]` is a scalar.
    public let shape: [Int]
    /// The tensor's bytes as ABSOLUTE offsets in the file (header included).
    public let byteRange: Range<Int>

    /// Number of elements (product of `shape`).
    public var count: Int { shape.reduce(1, *) }
}

/// A safetensors file read whole into memory (memory-mapped when the system allows) with
/// its header validated: every dtype known, every byte range inside the file, consistent
/// with its shape and disjoint from the others, no duplicate names.
public struct SafeTensorsFile {
    /// The path the file was read from.
    public let path: String
    /// Header entries by tensor name.
    public let tensors: [String: SafeTensorInfo]
    /// The header's `__metadata__` (empty when absent).
    public let metadata: [String: String]
    private let data: Data

    /// Reads and validates `path`.
    /// - Throws: `SafeTensorsError` (`.io`, `.truncated`, `.headerLengthBeyondFile`,
    ///   `.headerNotJSON`, `.missingField`, `.badField`, `.unknownDtype`,
    ///   `.shapeByteMismatch`, `.offsetsOutOfRange`, `.overlappingOffsets`, `.duplicateName`).
    public init(path: String) throws {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path), options: .mappedIfSafe)
        } catch {
            throw SafeTensorsError.io(path: path, detail: error.localizedDescription)
        }
        try self.init(data: data, path: path)
    }

    /// Parses an in-memory safetensors image; `path` is used in error messages only.
    /// - Throws: as `init(path:)`, except `.io`.
    public init(data: Data, path: String) throws {
        self.path = path
        self.data = data
        let size = data.count
        guard size >= 8 else { throw SafeTensorsError.truncated(path: path, fileSize: size) }
        let headerLength: UInt64 = data.withUnsafeBytes { raw in
            UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
        }
        guard headerLength <= UInt64(size - 8) else {
            throw SafeTensorsError.headerLengthBeyondFile(path: path, headerLength: headerLength, fileSize: size)
        }
        let n = Int(headerLength)
        let dataStart = 8 + n
        let dataSize = size - dataStart

        let header: [(String, JSONValue)]
        do {
            let bytes = [UInt8](data[data.startIndex + 8 ..< data.startIndex + dataStart])
            var parser = HeaderJSONParser(bytes: bytes)
            guard case .object(let members) = try parser.parseDocument() else {
                throw HeaderJSONParser.Failure(offset: 0, message: "the top-level value is not an object", duplicateKey: nil)
            }
            header = members
        } catch let failure as HeaderJSONParser.Failure {
            if let dup = failure.duplicateKey, failure.depth == 1 {
                throw SafeTensorsError.duplicateName(path: path, name: dup)
            }
            throw SafeTensorsError.headerNotJSON(path: path, offset: 8 + failure.offset, detail: failure.message)
        }

        var infos: [String: SafeTensorInfo] = [:]
        var meta: [String: String] = [:]
        var relative: [(name: String, begin: Int, end: Int)] = []
        for (name, value) in header {
            if name == "__metadata__" {
                guard case .object(let entries) = value else {
                    throw SafeTensorsError.badField(path: path, tensor: name, field: "__metadata__", detail: "must be an object of strings")
                }
                for (k, v) in entries {
                    guard case .string(let s) = v else {
                        throw SafeTensorsError.badField(path: path, tensor: name, field: k, detail: "must be a string (metadata values are strings)")
                    }
                    meta[k] = s
                }
                continue
            }
            guard case .object(let fields) = value else {
                throw SafeTensorsError.badField(path: path, tensor: name, field: "(entry)", detail: "must be an object with dtype, shape and data_offsets")
            }
            func field(_ f: String) throws -> JSONValue {
                guard let v = fields.first(where: { $0.0 == f })?.1 else {
                    throw SafeTensorsError.missingField(path: path, tensor: name, field: f)
                }
                return v
            }
            func naturals(_ f: String) throws -> [Int] {
                guard case .array(let items) = try field(f) else {
                    throw SafeTensorsError.badField(path: path, tensor: name, field: f, detail: "must be an array of non-negative integers")
                }
                return try items.map { item in
                    guard case .number(let d) = item, d >= 0, d == d.rounded(), d < 9.0e15 else {
                        throw SafeTensorsError.badField(path: path, tensor: name, field: f, detail: "must be an array of non-negative integers")
                    }
                    return Int(d)
                }
            }
            guard case .string(let dtypeName) = try field("dtype") else {
                throw SafeTensorsError.badField(path: path, tensor: name, field: "dtype", detail: "must be a string")
            }
            let shape = try naturals("shape")
            let offsets = try naturals("data_offsets")
            guard let dtype = SafeTensorsDType(rawValue: dtypeName) else {
                throw SafeTensorsError.unknownDtype(path: path, tensor: name, dtype: dtypeName)
            }
            guard offsets.count == 2 else {
                throw SafeTensorsError.badField(path: path, tensor: name, field: "data_offsets", detail: "must have exactly 2 entries [begin, end], found \(offsets.count)")
            }
            let (begin, end) = (offsets[0], offsets[1])
            guard begin <= end, end <= dataSize else {
                throw SafeTensorsError.offsetsOutOfRange(path: path, tensor: name, begin: begin, end: end, dataSize: dataSize)
            }
            var expected = dtype.size
            for d in shape {
                let (p, overflow) = expected.multipliedReportingOverflow(by: d)
                guard !overflow else {
                    throw SafeTensorsError.badField(path: path, tensor: name, field: "shape", detail: "\(shape) has more elements than can be addressed")
                }
                expected = p
            }
            guard expected == end - begin else {
                throw SafeTensorsError.shapeByteMismatch(path: path, tensor: name, shape: shape, dtype: dtypeName,
                                                         expectedBytes: expected, foundBytes: end - begin)
            }
            infos[name] = SafeTensorInfo(name: name, dtype: dtypeName, shape: shape,
                                         byteRange: dataStart + begin ..< dataStart + end)
            relative.append((name, begin, end))
        }
        // Disjointness: sorted by start, each non-empty range must begin at or after the
        // furthest end seen so far.
        relative.sort { ($0.begin, $0.end, $0.name) < ($1.begin, $1.end, $1.name) }
        var furthest: (name: String, end: Int)? = nil
        for r in relative where r.end > r.begin {
            if let f = furthest, r.begin < f.end {
                throw SafeTensorsError.overlappingOffsets(path: path, tensor: r.name, other: f.name, begin: r.begin, otherEnd: f.end)
            }
            if furthest == nil || r.end > furthest!.end { furthest = (r.name, r.end) }
        }
        tensors = infos
        metadata = meta
    }

    /// The named tensor's values converted to Float32, row-major (`info.count` elements).
    /// F32 is copied bit-exactly; F16, BF16 and F64 are converted (F64 rounds to nearest).
    /// - Throws: `SafeTensorsError.noSuchTensor`, `.notFloat` for integer/boolean/F8 dtypes.
    public func floats(_ name: String) throws -> [Float] {
        guard let info = tensors[name] else { throw SafeTensorsError.noSuchTensor(path: path, name: name) }
        var out = [Float](repeating: 0, count: info.count)
        try out.withUnsafeMutableBufferPointer { try copyFloats(info, into: $0) }
        return out
    }

    /// Writes the named tensor's values, converted to Float32, into `destination`, which
    /// must hold exactly `info.count` elements (used to fill a `ParameterBuffer` in place).
    /// - Throws: as `floats(_:)`, and `.badField` when `destination` has the wrong size.
    public func copyFloats(_ info: SafeTensorInfo, into destination: UnsafeMutableBufferPointer<Float>) throws {
        guard destination.count == info.count else {
            throw SafeTensorsError.badField(path: path, tensor: info.name, field: "shape",
                                            detail: "has \(info.count) elements but the destination holds \(destination.count)")
        }
        let dtype = SafeTensorsDType(rawValue: info.dtype)
        let n = info.count
        let start = info.byteRange.lowerBound
        data.withUnsafeBytes { raw in
            switch dtype {
            case .f32?:
                for i in 0 ..< n {
                    destination[i] = Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: start + 4 * i, as: UInt32.self)))
                }
            case .f16?:
                for i in 0 ..< n {
                    destination[i] = halfToFloat(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: start + 2 * i, as: UInt16.self)))
                }
            case .bf16?:
                for i in 0 ..< n {
                    let bits = UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: start + 2 * i, as: UInt16.self))
                    destination[i] = Float(bitPattern: UInt32(bits) << 16)
                }
            case .f64?:
                for i in 0 ..< n {
                    destination[i] = Float(Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: start + 8 * i, as: UInt64.self))))
                }
            default:
                break
            }
        }
        switch dtype {
        case .f32?, .f16?, .bf16?, .f64?: return
        default: throw SafeTensorsError.notFloat(path: path, tensor: info.name, dtype: info.dtype)
        }
    }
}

/// IEEE 754 binary16 bits to Float32 (exact: every half value is a float).
@inline(__always)
func halfToFloat(_ h: UInt16) -> Float {
    let sign = UInt32(h & 0x8000) << 16
    let exponent = UInt32(h >> 10) & 0x1f
    let mantissa = UInt32(h & 0x3ff)
    if exponent == 0 {
        // Zero or subnormal: mantissa * 2^-24.
        let magnitude = Float(mantissa) * Float(sign: .plus, exponent: -24, significand: 1)
        return sign == 0 ? magnitude : -magnitude
    }
    if exponent == 31 {
        return Float(bitPattern: sign | 0x7f80_0000 | (mantissa << 13))
    }
    return Float(bitPattern: sign | ((exponent + 112) << 23) | (mantissa << 13))
}

/// Writes safetensors files.
public enum SafeTensorsWriter {
    /// Writes `tensors` as F32 to `path`, atomically (a temporary file in the same
    /// directory, then rename). The header lists `__metadata__` first (omitted when empty),
    /// then the tensors in the given order with consecutive data offsets; it is padded with
    /// spaces to a multiple of 8 bytes like the Rust implementation.
    /// - Parameters:
    ///   - tensors: name, row-major shape and `product(shape)` values of each tensor.
    ///   - metadata: the header's `__metadata__` (HF expects `["format": "pt"]`).
    /// - Throws: `SafeTensorsError.duplicateName`, `.shapeByteMismatch` when a value count
    ///   does not match its shape, `.io` when the file cannot be written.
    public static func write(_ tensors: [(name: String, shape: [Int], values: [Float])],
                             metadata: [String: String], to path: String) throws {
        var header = "{"
        var first = true
        func member(_ key: String, _ value: String) {
            header += (first ? "" : ",") + jsonString(key) + ":" + value
            first = false
        }
        if !metadata.isEmpty {
            let body = metadata.sorted { $0.key < $1.key }
                .map { jsonString($0.key) + ":" + jsonString($0.value) }.joined(separator: ",")
            member("__metadata__", "{" + body + "}")
        }
        var seen = Set<String>()
        var offset = 0
        for t in tensors {
            guard seen.insert(t.name).inserted else { throw SafeTensorsError.duplicateName(path: path, name: t.name) }
            let count = t.shape.reduce(1, *)
            guard count == t.values.count, t.shape.allSatisfy({ $0 >= 0 }) else {
                throw SafeTensorsError.shapeByteMismatch(path: path, tensor: t.name, shape: t.shape, dtype: "F32",
                                                         expectedBytes: 4 * count, foundBytes: 4 * t.values.count)
            }
            let shape = t.shape.map(String.init).joined(separator: ",")
            member(t.name, "{\"dtype\":\"F32\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(offset + 4 * count)]}")
            offset += 4 * count
        }
        header += "}"
        var headerBytes = Array(header.utf8)
        headerBytes += [UInt8](repeating: 0x20, count: (8 - headerBytes.count % 8) % 8)

        var out = Data(capacity: 8 + headerBytes.count + offset)
        withUnsafeBytes(of: UInt64(headerBytes.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: headerBytes)
        for t in tensors {
            #if _endian(little)
            t.values.withUnsafeBytes { out.append(contentsOf: $0) }
            #else
            for v in t.values { withUnsafeBytes(of: v.bitPattern.littleEndian) { out.append(contentsOf: $0) } }
            #endif
        }
        do {
            try out.write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw SafeTensorsError.io(path: path, detail: error.localizedDescription)
        }
    }
}

/// `s` as a JSON string literal (RFC 8259 escaping).
func jsonString(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case _ where u.value < 0x20:
            out += String(format: "\\u%04x", u.value)
        default: out.unicodeScalars.append(u)
        }
    }
    return out + "\""
}

// MARK: - A small strict JSON parser for safetensors headers

/// A JSON value with object members kept in file order.
enum JSONValue {
    case object([(String, JSONValue)])
    case array([JSONValue])
    case string(String)
    case number(Double)
    case bool(Bool)
    case null
}

/// RFC 8259 parser over the header bytes. Unlike `JSONSerialization` it rejects duplicate
/// object keys (reporting the key and its nesting depth) and reports byte offsets.
struct HeaderJSONParser {
    struct Failure: Error {
        var offset: Int
        var message: String
        var duplicateKey: String?
        var depth: Int = 0
    }

    let bytes: [UInt8]
    var i = 0
    var depth = 0

    init(bytes: [UInt8]) { self.bytes = bytes }

    mutating func parseDocument() throws -> JSONValue {
        skipWhitespace()
        let v = try parseValue()
        skipWhitespace()
        guard i == bytes.count else { throw fail("unexpected data after the JSON value") }
        return v
    }

    private func fail(_ message: String) -> Failure { Failure(offset: i, message: message, duplicateKey: nil) }

    private mutating func skipWhitespace() {
        while i < bytes.count, [0x20, 0x09, 0x0a, 0x0d].contains(bytes[i]) { i += 1 }
    }

    private mutating func expect(_ literal: String, _ value: JSONValue) throws -> JSONValue {
        let l = Array(literal.utf8)
        guard i + l.count <= bytes.count, Array(bytes[i ..< i + l.count]) == l else { throw fail("invalid literal") }
        i += l.count
        return value
    }

    private mutating func parseValue() throws -> JSONValue {
        guard i < bytes.count else { throw fail("unexpected end of header") }
        switch bytes[i] {
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): return try expect("true", .bool(true))
        case UInt8(ascii: "f"): return try expect("false", .bool(false))
        case UInt8(ascii: "n"): return try expect("null", .null)
        case UInt8(ascii: "-"), UInt8(ascii: "0") ... UInt8(ascii: "9"): return try parseNumber()
        default: throw fail("unexpected character '\(Character(UnicodeScalar(bytes[i])))'")
        }
    }

    private mutating func parseObject() throws -> JSONValue {
        i += 1
        depth += 1
        defer { depth -= 1 }
        guard depth <= 64 else { throw fail("nesting deeper than 64 levels") }
        var members: [(String, JSONValue)] = []
        var keys = Set<String>()
        skipWhitespace()
        if i < bytes.count, bytes[i] == UInt8(ascii: "}") { i += 1; return .object(members) }
        while true {
            skipWhitespace()
            guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { throw fail("expected a string key") }
            let keyOffset = i
            let key = try parseString()
            guard keys.insert(key).inserted else {
                throw Failure(offset: keyOffset, message: "duplicate key '\(key)'", duplicateKey: key, depth: depth)
            }
            skipWhitespace()
            guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { throw fail("expected ':'") }
            i += 1
            skipWhitespace()
            members.append((key, try parseValue()))
            skipWhitespace()
            guard i < bytes.count else { throw fail("unexpected end of header inside an object") }
            if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
            if bytes[i] == UInt8(ascii: "}") { i += 1; return .object(members) }
            throw fail("expected ',' or '}'")
        }
    }

    private mutating func parseArray() throws -> JSONValue {
        i += 1
        depth += 1
        defer { depth -= 1 }
        guard depth <= 64 else { throw fail("nesting deeper than 64 levels") }
        var items: [JSONValue] = []
        skipWhitespace()
        if i < bytes.count, bytes[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
        while true {
            skipWhitespace()
            items.append(try parseValue())
            skipWhitespace()
            guard i < bytes.count else { throw fail("unexpected end of header inside an array") }
            if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
            if bytes[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
            throw fail("expected ',' or ']'")
        }
    }

    private mutating func parseHex4() throws -> UInt32 {
        guard i + 4 <= bytes.count else { throw fail("truncated \\u escape") }
        var v: UInt32 = 0
        for _ in 0 ..< 4 {
            let c = bytes[i]
            let d: UInt32
            switch c {
            case UInt8(ascii: "0") ... UInt8(ascii: "9"): d = UInt32(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a") ... UInt8(ascii: "f"): d = UInt32(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A") ... UInt8(ascii: "F"): d = UInt32(c - UInt8(ascii: "A") + 10)
            default: throw fail("invalid hex digit in \\u escape")
            }
            v = v * 16 + d
            i += 1
        }
        return v
    }

    private mutating func parseString() throws -> String {
        i += 1
        var out: [UInt8] = []
        while true {
            guard i < bytes.count else { throw fail("unterminated string") }
            let c = bytes[i]
            if c == UInt8(ascii: "\"") { i += 1; break }
            if c < 0x20 { throw fail("control character in string") }
            if c != UInt8(ascii: "\\") { out.append(c); i += 1; continue }
            i += 1
            guard i < bytes.count else { throw fail("unterminated escape") }
            let e = bytes[i]
            i += 1
            switch e {
            case UInt8(ascii: "\""): out.append(0x22)
            case UInt8(ascii: "\\"): out.append(0x5c)
            case UInt8(ascii: "/"): out.append(0x2f)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0c)
            case UInt8(ascii: "n"): out.append(0x0a)
            case UInt8(ascii: "r"): out.append(0x0d)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try parseHex4()
                if (0xd800 ..< 0xdc00).contains(scalar) {
                    guard i + 2 <= bytes.count, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u") else {
                        throw fail("unpaired surrogate in \\u escape")
                    }
                    i += 2
                    let low = try parseHex4()
                    guard (0xdc00 ..< 0xe000).contains(low) else { throw fail("invalid low surrogate in \\u escape") }
                    scalar = 0x10000 + ((scalar - 0xd800) << 10) + (low - 0xdc00)
                }
                guard let u = Unicode.Scalar(scalar) else { throw fail("invalid code point in \\u escape") }
                out.append(contentsOf: Array(String(Character(u)).utf8))
            default:
                throw fail("invalid escape '\\\(Character(UnicodeScalar(e)))'")
            }
        }
        // Invalid UTF-8 becomes U+FFFD (String(validating:) needs macOS 15).
        return String(decoding: out, as: UTF8.self)
    }

    private mutating func parseNumber() throws -> JSONValue {
        let start = i
        if bytes[i] == UInt8(ascii: "-") { i += 1 }
        func digits() -> Int {
            let s = i
            while i < bytes.count, (UInt8(ascii: "0") ... UInt8(ascii: "9")).contains(bytes[i]) { i += 1 }
            return i - s
        }
        guard digits() > 0 else { throw fail("invalid number") }
        if i < bytes.count, bytes[i] == UInt8(ascii: ".") {
            i += 1
            guard digits() > 0 else { throw fail("invalid number") }
        }
        if i < bytes.count, bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
            i += 1
            if i < bytes.count, bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") { i += 1 }
            guard digits() > 0 else { throw fail("invalid number") }
        }
        guard let d = Double(String(decoding: bytes[start ..< i], as: UTF8.self)) else { throw fail("invalid number") }
        return .number(d)
    }
}
