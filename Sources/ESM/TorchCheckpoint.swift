import Foundation

// A restricted reader of the files `torch.save` writes (PyTorch >= 1.6, the default "zip"
// serialization; see torch/serialization.py `_save` and `_load`):
//
//   a zip archive (entries stored, not compressed) holding
//     <archive>/data.pkl     a pickle (protocol 2) of the saved object, in which every tensor
//                            is `torch._utils._rebuild_tensor_v2(storage, offset, size, stride,
//                            requires_grad, backward_hooks[, metadata])` and every storage a
//                            persistent id ('storage', torch.FloatStorage, key, location, numel)
//     <archive>/data/<key>   the storage's raw little-endian bytes
//     <archive>/version, <archive>/byteorder (newer), ...
//
// Unpickling here is a small virtual machine over the opcodes of Python's pickle protocol 2-5
// (Lib/pickletools.py documents each one) that never executes code: GLOBAL may name only the
// classes and functions in `TorchPickle.allowed` (tensors, storages, OrderedDict,
// argparse.Namespace for fair-esm's `args`/`cfg`, `_codecs.encode` for bytes); anything else,
// and every opcode outside the supported set, is an error naming it. Every read is bounds
// checked, so a truncated or hostile file is an error, never a crash.

/// A PyTorch checkpoint file that cannot be read safely.
public enum TorchCheckpointError: Error, CustomStringConvertible, Equatable {
    /// The file cannot be read.
    case io(path: String, detail: String)
    /// Not a zip archive as torch.save writes it (or truncated); `detail` says what is wrong.
    case badArchive(path: String, detail: String)
    /// The pickle is malformed or truncated at `offset` of data.pkl.
    case badPickle(path: String, offset: Int, detail: String)
    /// The pickle names a class or function outside the allow-list (it would run code).
    case forbiddenGlobal(path: String, name: String)
    /// The pickle uses an opcode this reader does not support.
    case unsupportedOpcode(path: String, offset: Int, opcode: UInt8)
    /// A tensor or storage is inconsistent (sizes, strides, dtype, missing data file).
    case badTensor(path: String, detail: String)

    public var description: String {
        switch self {
        case .io(let path, let detail):
            return "\(path): cannot read the file: \(detail)"
        case .badArchive(let path, let detail):
            return "\(path): not a PyTorch checkpoint as torch.save writes it (a zip archive with data.pkl): \(detail)"
        case .badPickle(let path, let offset, let detail):
            return "\(path): data.pkl is malformed at byte \(offset): \(detail); the file is truncated or corrupt"
        case .forbiddenGlobal(let path, let name):
            return name.hasPrefix("torch.")
                ? "\(path): refused: the pickle uses \(name), a tensor type or layout this reader does not support (it reads dense tensors of float, integer and bool storages); convert the checkpoint to float32 safetensors with transformers"
                : "\(path): refused: the pickle calls \(name), which is not a tensor, storage or plain container; kneuron never runs code from a checkpoint (re-save the state_dict alone, or convert it to safetensors with transformers)"
        case .unsupportedOpcode(let path, let offset, let opcode):
            return "\(path): data.pkl uses pickle opcode 0x\(String(opcode, radix: 16)) at byte \(offset), which this reader does not support; re-save the checkpoint with torch.save (protocol 2) or convert it to safetensors"
        case .badTensor(let path, let detail):
            return "\(path): \(detail)"
        }
    }
}

/// A value of the restricted pickle machine.
indirect enum PickleValue {
    case none
    case bool(Bool)
    case int(Int)
    case float(Double)
    case string(String)
    case bytes([UInt8])
    case tuple(PickleTuple)
    case list(PickleList)
    case dict(PickleDict)
    /// An allowed class or function, `module.name`.
    case global(String)
    /// `argparse.Namespace`: its attributes.
    case namespace(PickleDict)
    /// A storage: element type (`torch.FloatStorage` -> `F32`), key of its data file, elements.
    case storage(dtype: SafeTensorsDType, key: String, count: Int)
    /// A tensor view of a storage.
    case tensor(TorchTensor)
    /// The MARK sentinel on the stack.
    case mark

    /// The value as an Int, when it is one (or a bool).
    var int: Int? {
        switch self {
        case .int(let v): return v
        case .bool(let b): return b ? 1 : 0
        default: return nil
        }
    }

    /// The elements of a tuple or list.
    var elements: [PickleValue]? {
        switch self {
        case .tuple(let t): return t.items
        case .list(let l): return l.items
        default: return nil
        }
    }

    /// A short description for messages.
    var kind: String {
        switch self {
        case .none: return "None"
        case .bool: return "bool"
        case .int: return "int"
        case .float: return "float"
        case .string: return "str"
        case .bytes: return "bytes"
        case .tuple: return "tuple"
        case .list: return "list"
        case .dict: return "dict"
        case .global(let n): return n
        case .namespace: return "argparse.Namespace"
        case .storage: return "storage"
        case .tensor: return "tensor"
        case .mark: return "mark"
        }
    }
}

/// A pickled tuple (immutable) and how deeply tuples nest inside it (lists and dicts, emptied
/// by `TorchPickle.release`, do not count), so that nesting can be capped: a value nested
/// thousands of levels deep would overflow the stack when it is freed.
final class PickleTuple {
    let items: [PickleValue]
    let depth: Int
    init(_ items: [PickleValue]) {
        self.items = items
        depth = 1 + items.reduce(0) { d, v in if case .tuple(let t) = v { return max(d, t.depth) } else { return d } }
    }
}

/// A pickled list (a reference: APPEND mutates the object the memo also holds).
final class PickleList {
    var items: [PickleValue] = []
    init(_ items: [PickleValue] = []) { self.items = items }
}

/// A pickled dict (a reference, as `PickleList`); keys in insertion order, string keys indexed.
final class PickleDict {
    var keys: [PickleValue] = []
    var values: [PickleValue] = []
    private var index: [String: Int] = [:]
    init() {}

    func set(_ key: PickleValue, _ value: PickleValue) {
        if case .string(let s) = key, let i = index[s] {
            values[i] = value
            return
        }
        if case .string(let s) = key { index[s] = keys.count }
        keys.append(key)
        values.append(value)
    }

    /// Drops every entry (see `TorchPickle.release`).
    func removeAll() { keys = []; values = []; index = [:] }

    /// The value of a string key.
    subscript(_ key: String) -> PickleValue? { index[key].map { values[$0] } }
}

/// A tensor of a PyTorch checkpoint: a strided view of one storage.
struct TorchTensor {
    var dtype: SafeTensorsDType
    var storageKey: String
    var storageCount: Int
    var offset: Int
    var shape: [Int]
    var stride: [Int]
}

/// The restricted unpickler (see the file comment).
struct TorchPickle {
    /// The globals a checkpoint may name: everything else is refused.
    static let storageTypes: [String: SafeTensorsDType] = [
        "torch.FloatStorage": .f32, "torch.HalfStorage": .f16, "torch.BFloat16Storage": .bf16, "torch.DoubleStorage": .f64,
        "torch.LongStorage": .i64, "torch.IntStorage": .i32, "torch.ShortStorage": .i16, "torch.CharStorage": .i8,
        "torch.ByteStorage": .u8, "torch.BoolStorage": .bool,
    ]
    static let allowed: Set<String> = Set(storageTypes.keys).union([
        "collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter",
        "argparse.Namespace", "_codecs.encode",
    ])

    let path: String
    let bytes: [UInt8]
    private var pos = 0
    private var stack: [PickleValue] = []
    private var marks: [Int] = []
    private var memo: [Int: PickleValue] = [:]
    /// Every list and dict made, emptied by `release` so that freeing them never recurses deeply.
    private var lists: [PickleList] = []
    private var dicts: [PickleDict] = []
    /// Tuples nested deeper than this are refused (state_dicts nest a few levels).
    static let maxDepth = 1000

    init(path: String, bytes: [UInt8]) {
        self.path = path
        self.bytes = bytes
    }

    private func fail(_ detail: String) -> TorchCheckpointError { .badPickle(path: path, offset: pos, detail: detail) }

    /// Empties every list and dict the machine made (and its stack and memo), so that the
    /// values are freed without deep recursion whatever the pickle nested. Call it when the
    /// loaded value is no longer needed.
    mutating func release() {
        for l in lists { l.items = [] }
        for d in dicts { d.removeAll() }
        lists = []; dicts = []; stack = []; memo = [:]
    }

    private mutating func tuple(_ items: [PickleValue]) throws -> PickleValue {
        let t = PickleTuple(items)
        guard t.depth <= Self.maxDepth else { throw fail("tuples nested more than \(Self.maxDepth) levels deep") }
        return .tuple(t)
    }

    private mutating func newList(_ items: [PickleValue] = []) -> PickleValue {
        let l = PickleList(items)
        lists.append(l)
        return .list(l)
    }

    private mutating func newDict() -> PickleDict {
        let d = PickleDict()
        dicts.append(d)
        return d
    }

    private mutating func take(_ n: Int) throws -> ArraySlice<UInt8> {
        guard n >= 0, pos <= bytes.count - n else { throw fail("needs \(n) more bytes but the data ends") }
        defer { pos += n }
        return bytes[pos ..< pos + n]
    }

    private mutating func uint(_ n: Int) throws -> UInt64 {
        var v: UInt64 = 0
        for (i, b) in try take(n).enumerated() { v |= UInt64(b) << (8 * UInt64(i)) }
        return v
    }

    private mutating func length(_ n: Int) throws -> Int {
        let v = try uint(n)
        guard v <= UInt64(bytes.count) else { throw fail("a length of \(v) bytes is longer than the data") }
        return Int(v)
    }

    private mutating func line() throws -> String {
        guard let end = bytes[pos...].firstIndex(of: 0x0A) else { throw fail("a text argument has no end of line") }
        defer { pos = end + 1 }
        return String(decoding: bytes[pos ..< end], as: UTF8.self)
    }

    private mutating func pop() throws -> PickleValue {
        guard let v = stack.popLast() else { throw fail("the stack is empty") }
        if case .mark = v { throw fail("a MARK where a value was expected") }
        return v
    }

    private mutating func popMark() throws -> [PickleValue] {
        guard let m = marks.popLast(), m < stack.count, case .mark = stack[m] else { throw fail("no MARK to pop to") }
        let items = Array(stack[(m + 1)...])
        stack.removeSubrange(m...)
        return items
    }

    private mutating func push(_ v: PickleValue) throws {
        guard stack.count < 1_000_000 else { throw fail("the stack grows past a million values") }
        stack.append(v)
    }

    private func top() throws -> PickleValue {
        guard let v = stack.last else { throw fail("the stack is empty") }
        return v
    }

    private mutating func global(_ module: String, _ name: String) throws -> PickleValue {
        let full = module + "." + name
        guard Self.allowed.contains(full) else { throw TorchCheckpointError.forbiddenGlobal(path: path, name: full) }
        return .global(full)
    }

    /// Applies an allowed callable (REDUCE, NEWOBJ) to `args`.
    private mutating func call(_ f: PickleValue, _ args: [PickleValue]) throws -> PickleValue {
        guard case .global(let name) = f else { throw fail("REDUCE applies a \(f.kind), which is not an allowed callable") }
        switch name {
        case "collections.OrderedDict":
            guard args.isEmpty else { throw fail("OrderedDict with arguments") }
            return .dict(newDict())
        case "argparse.Namespace":
            return .namespace(newDict())
        case "_codecs.encode":
            guard args.count == 2, case .string(let s) = args[0], case .string(let enc) = args[1], enc == "latin1" || enc == "latin-1" else {
                throw fail("_codecs.encode takes a str and 'latin1'")
            }
            return .bytes(s.unicodeScalars.map { UInt8(truncatingIfNeeded: $0.value) })
        case "torch._utils._rebuild_tensor_v2":
            guard args.count >= 4, case .storage(let dtype, let key, let count) = args[0], let offset = args[1].int,
                  let size = args[2].elements?.map(\.int), let stride = args[3].elements?.map(\.int),
                  size.allSatisfy({ $0 != nil }), stride.allSatisfy({ $0 != nil }), size.count == stride.count else {
                throw fail("_rebuild_tensor_v2 needs (storage, offset, size tuple, stride tuple, ...)")
            }
            return .tensor(TorchTensor(dtype: dtype, storageKey: key, storageCount: count, offset: offset,
                                       shape: size.map { $0! }, stride: stride.map { $0! }))
        case "torch._utils._rebuild_parameter":
            guard let first = args.first, case .tensor = first else { throw fail("_rebuild_parameter needs a tensor") }
            return first
        default:
            throw fail("\(name) cannot be called")   // storage classes appear only in persistent ids
        }
    }

    /// Runs the pickle to its STOP and returns the value.
    /// - Throws: `TorchCheckpointError` (`.badPickle`, `.forbiddenGlobal`, `.unsupportedOpcode`).
    mutating func load() throws -> PickleValue {
        while true {
            let at = pos
            let op = try take(1).first!
            switch op {
            case 0x80: _ = try take(1)                                        // PROTO
            case 0x95: _ = try take(8)                                        // FRAME
            case 0x2E: return try pop()                                       // STOP
            case 0x28: marks.append(stack.count); try push(.mark)             // MARK
            case 0x4E: try push(.none)                                        // NONE
            case 0x88: try push(.bool(true))                                  // NEWTRUE
            case 0x89: try push(.bool(false))                                 // NEWFALSE
            case 0x4A: try push(.int(Int(Int32(bitPattern: UInt32(try uint(4))))))   // BININT
            case 0x4B: try push(.int(Int(try uint(1))))                       // BININT1
            case 0x4D: try push(.int(Int(try uint(2))))                       // BININT2
            case 0x8A:                                                        // LONG1
                let n = try length(1)
                guard n <= 8 else { throw fail("an integer of \(n) bytes") }
                let raw = try take(n)
                var v: Int64 = 0
                for (i, b) in raw.enumerated() { v |= Int64(b) << (8 * Int64(i)) }
                if n > 0 && n < 8 && raw.last! & 0x80 != 0 { v -= Int64(1) << (8 * Int64(n)) }
                try push(.int(Int(v)))
            case 0x47: try push(.float(Double(bitPattern: UInt64(bigEndian: try uint(8)))))  // BINFLOAT (big-endian)
            case 0x58: try push(.string(String(decoding: try take(try length(4)), as: UTF8.self)))   // BINUNICODE
            case 0x8C: try push(.string(String(decoding: try take(try length(1)), as: UTF8.self)))   // SHORT_BINUNICODE
            case 0x8D: try push(.string(String(decoding: try take(try length(8)), as: UTF8.self)))   // BINUNICODE8
            case 0x43: try push(.bytes(Array(try take(try length(1)))))       // SHORT_BINBYTES
            case 0x42: try push(.bytes(Array(try take(try length(4)))))       // BINBYTES
            case 0x55: try push(.string(String(decoding: try take(try length(1)), as: UTF8.self)))   // SHORT_BINSTRING
            case 0x54: try push(.string(String(decoding: try take(try length(4)), as: UTF8.self)))   // BINSTRING
            case 0x29: try push(try tuple([]))                                // EMPTY_TUPLE
            case 0x85: try push(try tuple([try pop()]))                       // TUPLE1
            case 0x86: let b = try pop(), a = try pop(); try push(try tuple([a, b]))           // TUPLE2
            case 0x87: let c = try pop(), b = try pop(), a = try pop(); try push(try tuple([a, b, c]))   // TUPLE3
            case 0x74: try push(try tuple(try popMark()))                     // TUPLE
            case 0x5D: try push(newList())                                    // EMPTY_LIST
            case 0x6C: try push(newList(try popMark()))                       // LIST
            case 0x7D: try push(.dict(newDict()))                             // EMPTY_DICT
            case 0x64:                                                        // DICT
                let items = try popMark()
                guard items.count % 2 == 0 else { throw fail("DICT with an odd number of items") }
                let d = newDict()
                for i in stride(from: 0, to: items.count, by: 2) { d.set(items[i], items[i + 1]) }
                try push(.dict(d))
            case 0x61:                                                        // APPEND
                let v = try pop()
                guard case .list(let l) = try top() else { throw fail("APPEND to a \(try top().kind)") }
                l.items.append(v)
            case 0x65:                                                        // APPENDS
                let items = try popMark()
                guard case .list(let l) = try top() else { throw fail("APPENDS to a \(try top().kind)") }
                l.items += items
            case 0x73:                                                        // SETITEM
                let v = try pop(), k = try pop()
                guard case .dict(let d) = try top() else { throw fail("SETITEM on a \(try top().kind)") }
                d.set(k, v)
            case 0x75:                                                        // SETITEMS
                let items = try popMark()
                guard items.count % 2 == 0 else { throw fail("SETITEMS with an odd number of items") }
                guard case .dict(let d) = try top() else { throw fail("SETITEMS on a \(try top().kind)") }
                for i in stride(from: 0, to: items.count, by: 2) { d.set(items[i], items[i + 1]) }
            case 0x71: memo[Int(try uint(1))] = try top()                     // BINPUT
            case 0x72: memo[Int(try uint(4))] = try top()                     // LONG_BINPUT
            case 0x94: memo[memo.count] = try top()                           // MEMOIZE
            case 0x68, 0x6A:                                                  // BINGET, LONG_BINGET
                let i = Int(try uint(op == 0x68 ? 1 : 4))
                guard let v = memo[i] else { throw fail("memo entry \(i) was never stored") }
                try push(v)
            case 0x63:                                                        // GLOBAL "module\nname\n"
                let module = try line(), name = try line()
                try push(try global(module, name))
            case 0x93:                                                        // STACK_GLOBAL
                guard case .string(let name) = try pop(), case .string(let module) = try pop() else { throw fail("STACK_GLOBAL needs two strings") }
                try push(try global(module, name))
            case 0x52:                                                        // REDUCE
                let args = try pop(), f = try pop()
                guard let a = args.elements else { throw fail("REDUCE arguments are a \(args.kind), not a tuple") }
                try push(try call(f, a))
            case 0x81:                                                        // NEWOBJ
                let args = try pop(), cls = try pop()
                guard let a = args.elements else { throw fail("NEWOBJ arguments are a \(args.kind)") }
                try push(try call(cls, a))
            case 0x62:                                                        // BUILD
                let state = try pop()
                switch try top() {
                case .namespace(let attributes):
                    guard case .dict(let d) = state else { throw fail("argparse.Namespace state is a \(state.kind)") }
                    for (k, v) in zip(d.keys, d.values) { attributes.set(k, v) }
                case .dict, .tensor:
                    break   // OrderedDict's `_metadata`, a tensor's python attributes: not needed
                default:
                    throw fail("BUILD on a \(try top().kind)")
                }
            case 0x51:                                                        // BINPERSID
                let pid = try pop()
                guard let t = pid.elements, t.count >= 5, case .string("storage") = t[0], case .global(let type) = t[1],
                      let dtype = Self.storageTypes[type], let count = t[4].int, count >= 0 else {
                    throw fail("a persistent id other than ('storage', torch.<Type>Storage, key, location, numel)")
                }
                let key: String
                switch t[2] {
                case .string(let s): key = s
                case .int(let i): key = String(i)
                default: throw fail("a storage key that is a \(t[2].kind)")
                }
                guard !key.contains("/"), !key.contains("..") else { throw fail("storage key '\(key)' is not a plain name") }
                try push(.storage(dtype: dtype, key: key, count: count))
            default:
                throw TorchCheckpointError.unsupportedOpcode(path: path, offset: at, opcode: op)
            }
        }
    }
}

/// The stored (uncompressed) entries of a zip archive, by name: where their bytes are.
/// Reads the end of central directory record (ZIP64 too) and the central directory
/// (APPNOTE.TXT 4.3.12-4.3.16), then each entry's local header for its data offset.
struct ZipEntries {
    let path: String
    let data: Data
    private(set) var entries: [String: Range<Int>] = [:]

    init(path: String, data: Data) throws {
        self.path = path
        self.data = data
        func bad(_ d: String) -> TorchCheckpointError { .badArchive(path: path, detail: d) }
        let n = data.count
        func u(_ at: Int, _ k: Int) throws -> UInt64 {
            guard at >= 0, k >= 0, at <= n - k else { throw bad("a record at byte \(at) reaches past the end of the \(n)-byte file (truncated?)") }
            var v: UInt64 = 0
            data.withUnsafeBytes { raw in for i in 0 ..< k { v |= UInt64(raw[at + i]) << (8 * UInt64(i)) } }
            return v
        }
        guard n >= 22 else { throw bad("the file is \(n) bytes, too short for a zip archive") }
        if try u(0, 1) == 0x80 {
            throw bad("it starts like a pickle: the legacy (PyTorch < 1.6) format; load and re-save it with torch.save in PyTorch >= 1.6")
        }
        // End of central directory: the last signature 0x06054b50 in the final 64 KiB + 22 bytes.
        var eocd = -1
        var i = n - 22
        while i >= max(0, n - 22 - 65_535) {
            if try u(i, 4) == 0x0605_4B50 { eocd = i; break }
            i -= 1
        }
        guard eocd >= 0 else { throw bad("no end of central directory record: not a zip archive, or truncated") }
        var count = Int(try u(eocd + 10, 2))
        var cdSize = Int(try u(eocd + 12, 4))
        var cdOffset = Int(try u(eocd + 16, 4))
        if (count == 0xFFFF || cdOffset == 0xFFFF_FFFF), eocd >= 20, try u(eocd - 20, 4) == 0x0706_4B50 {
            let z64 = Int(clamping: try u(eocd - 12, 8))
            guard try u(z64, 4) == 0x0606_4B50 else { throw bad("the ZIP64 locator points to no ZIP64 end of central directory") }
            count = Int(clamping: try u(z64 + 32, 8))
            cdSize = Int(clamping: try u(z64 + 40, 8))
            cdOffset = Int(clamping: try u(z64 + 48, 8))
        }
        guard cdOffset >= 0, cdSize >= 0, cdOffset <= n - cdSize else { throw bad("the central directory lies outside the file (truncated?)") }
        var at = cdOffset
        for _ in 0 ..< count {
            guard try u(at, 4) == 0x0201_4B50 else { throw bad("central directory entry at byte \(at) has no signature") }
            let method = try u(at + 10, 2)
            var compressed = try u(at + 20, 4), uncompressed = try u(at + 24, 4)
            let nameLength = Int(try u(at + 28, 2)), extraLength = Int(try u(at + 30, 2)), commentLength = Int(try u(at + 32, 2))
            var local = try u(at + 42, 4)
            guard at + 46 <= n - nameLength else { throw bad("entry name at byte \(at + 46) reaches past the end") }
            let name = String(decoding: data[(at + 46) ..< (at + 46 + nameLength)], as: UTF8.self)
            // ZIP64 extended information: the 0xFFFFFFFF fields, in order.
            var e = at + 46 + nameLength
            let extraEnd = e + extraLength
            while e + 4 <= extraEnd {
                let id = try u(e, 2), size = Int(try u(e + 2, 2))
                if id == 0x0001 {
                    var f = e + 4
                    if uncompressed == 0xFFFF_FFFF { uncompressed = try u(f, 8); f += 8 }
                    if compressed == 0xFFFF_FFFF { compressed = try u(f, 8); f += 8 }
                    if local == 0xFFFF_FFFF { local = try u(f, 8); f += 8 }
                }
                e += 4 + size
            }
            guard method == 0 else { throw bad("entry \(name) is compressed (method \(method)); torch.save stores entries uncompressed") }
            guard compressed == uncompressed else { throw bad("entry \(name): stored sizes differ (\(compressed) and \(uncompressed))") }
            let lh = Int(clamping: local)
            guard try u(lh, 4) == 0x0403_4B50 else { throw bad("entry \(name): no local header at byte \(lh)") }
            let start = lh + 30 + Int(try u(lh + 26, 2)) + Int(try u(lh + 28, 2))
            let size = Int(clamping: compressed)
            guard start >= 0, size >= 0, start <= n - size else { throw bad("entry \(name) (\(size) bytes at byte \(start)) reaches past the end of the \(n)-byte file (truncated?)") }
            entries[name] = start ..< start + size
            at = extraEnd + commentLength
        }
    }
}

/// PyTorch checkpoint files (`torch.save`) read as safetensors images, so that `Checkpoint`
/// loads them exactly as it loads `model.safetensors`.
public enum TorchCheckpoint {
    /// Reads `path` and passes the top-level object, the archive and the entries' prefix
    /// (`archive/`) to `body`; the unpickled values are released (without deep recursion) when
    /// `body` returns or anything throws.
    /// - Throws: `TorchCheckpointError`, and what `body` throws.
    static func read<T>(path: String, _ body: (PickleValue, ZipEntries, String) throws -> T) throws -> T {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path), options: .mappedIfSafe) } catch {
            throw TorchCheckpointError.io(path: path, detail: error.localizedDescription)
        }
        let zip = try ZipEntries(path: path, data: data)
        guard let pkl = zip.entries.keys.sorted().first(where: { $0 == "data.pkl" || $0.hasSuffix("/data.pkl") && !$0.dropLast(9).contains("/") }) else {
            throw TorchCheckpointError.badArchive(path: path, detail: "no <archive>/data.pkl entry (entries: \(zip.entries.keys.sorted().prefix(5).joined(separator: ", ")))")
        }
        let prefix = String(pkl.dropLast("data.pkl".count))
        var machine = TorchPickle(path: path, bytes: [UInt8](data[zip.entries[pkl]!]))
        defer { machine.release() }
        let object = try machine.load()
        return try body(object, zip, prefix)
    }

    /// The tensors of `state` (name -> tensor; other values are skipped when `skipOthers`,
    /// else an error) as an in-memory safetensors image: each tensor's elements copied in
    /// row-major order from its strided view of its storage (`<prefix>data/<key>`), with names
    /// changed by `rename` (nil drops the tensor).
    /// - Throws: `TorchCheckpointError.badTensor` for a view outside its storage, a missing or
    ///   short data file, or a non-tensor value; `SafeTensorsError` for the image.
    static func safetensors(_ state: PickleDict, archive: ZipEntries, prefix: String, path: String,
                            rename: (String) -> String? = { $0 }) throws -> SafeTensorsFile {
        var header: [String: Any] = [:]
        var buffer = Data()
        for (k, v) in Swift.zip(state.keys, state.values) {
            guard case .string(let stored) = k else { throw TorchCheckpointError.badTensor(path: path, detail: "a state_dict key is a \(k.kind), not a name") }
            guard case .tensor(let t) = v else {
                throw TorchCheckpointError.badTensor(path: path, detail: "'\(stored)' is a \(v.kind), not a tensor")
            }
            guard let name = rename(stored) else { continue }
            guard let range = archive.entries[prefix + "data/" + t.storageKey] else {
                throw TorchCheckpointError.badTensor(path: path, detail: "tensor '\(stored)': its storage \(t.storageKey) has no data file \(prefix)data/\(t.storageKey)")
            }
            // Every product below is checked: this module is compiled with -Ounchecked.
            let size = t.dtype.size
            let (storageBytes, storageOverflow) = t.storageCount.multipliedReportingOverflow(by: size)
            guard t.storageCount >= 0, !storageOverflow, range.count >= storageBytes else {
                throw TorchCheckpointError.badTensor(path: path, detail: "tensor '\(stored)': storage \(t.storageKey) holds \(range.count) bytes, fewer than its \(t.storageCount) elements of \(size) bytes")
            }
            guard t.shape.allSatisfy({ $0 >= 0 }), t.stride.allSatisfy({ $0 >= 0 }), t.offset >= 0 else {
                throw TorchCheckpointError.badTensor(path: path, detail: "tensor '\(stored)' has a negative size, stride or offset")
            }
            var count = 1
            for n in t.shape {
                let (c, o) = count.multipliedReportingOverflow(by: n)
                guard !o else { throw TorchCheckpointError.badTensor(path: path, detail: "tensor '\(stored)' of shape \(t.shape) has more elements than can be counted") }
                count = c
            }
            // A weight has no more elements than its storage; a broadcast view (stride 0) that
            // expands a few values into many is refused, so memory stays bounded by the file.
            guard count <= t.storageCount else {
                throw TorchCheckpointError.badTensor(path: path, detail: "tensor '\(stored)' of shape \(t.shape) has \(count) elements but its storage only \(t.storageCount) (an expanded, broadcast view); re-save it with .contiguous()")
            }
            // The last element's index in the storage must be inside it.
            guard let last = lastElement(t), count == 0 || last < t.storageCount else {
                throw TorchCheckpointError.badTensor(path: path, detail: "tensor '\(stored)' (shape \(t.shape), stride \(t.stride), offset \(t.offset)) reaches past the end of its storage of \(t.storageCount) elements")
            }
            let begin = buffer.count
            let base = range.lowerBound
            if isContiguous(t) {
                buffer.append(archive.data[(base + t.offset * size) ..< (base + (t.offset + count) * size)])
            } else {
                archive.data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
                    var index = [Int](repeating: 0, count: t.shape.count)
                    var bytes = [UInt8](repeating: 0, count: count * size)
                    for e in 0 ..< count {
                        var element = t.offset
                        for d in 0 ..< index.count { element += index[d] * t.stride[d] }
                        for b in 0 ..< size { bytes[e * size + b] = raw[base + element * size + b] }
                        var d = index.count - 1
                        while d >= 0 { index[d] += 1; if index[d] < t.shape[d] { break }; index[d] = 0; d -= 1 }
                    }
                    buffer.append(contentsOf: bytes)
                }
            }
            guard header[name] == nil else { throw TorchCheckpointError.badTensor(path: path, detail: "two tensors are named '\(name)'") }
            header[name] = ["dtype": t.dtype.rawValue, "shape": t.shape, "data_offsets": [begin, buffer.count]]
        }
        header["__metadata__"] = ["format": "pt", "source": "torch.save"]
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while json.count % 8 != 0 { json.append(0x20) }
        var image = Data()
        var length = UInt64(json.count).littleEndian
        withUnsafeBytes(of: &length) { image.append(contentsOf: $0) }
        image.append(json)
        image.append(buffer)
        return try SafeTensorsFile(data: image, path: path)
    }

    /// offset + sum_d (shape[d] - 1) * stride[d], the storage index of a view's last element;
    /// nil when it overflows.
    private static func lastElement(_ t: TorchTensor) -> Int? {
        var last = t.offset
        for (n, st) in zip(t.shape, t.stride) where n > 0 {
            let (step, o1) = (n - 1).multipliedReportingOverflow(by: st)
            let (sum, o2) = last.addingReportingOverflow(step)
            if o1 || o2 { return nil }
            last = sum
        }
        return last
    }

    /// True when the view is row-major contiguous (strides of dimensions of size 1 do not matter).
    private static func isContiguous(_ t: TorchTensor) -> Bool {
        var expected = 1
        for d in stride(from: t.shape.count - 1, through: 0, by: -1) {
            if t.shape[d] != 1 && t.stride[d] != expected { return false }
            expected *= t.shape[d]
        }
        return true
    }
}
