import CShims
#if canImport(Glibc)
import Glibc
#endif

@_silgen_name("swift_demangle")
private func swiftDemangle(
    _ mangledName: UnsafePointer<CChar>?, _ mangledNameLength: UInt, _ outputBuffer: UnsafeMutablePointer<CChar>?,
    _ outputBufferSize: UnsafeMutablePointer<UInt>?, _ flags: UInt32
) -> UnsafeMutablePointer<CChar>?

/// Names code addresses: which image (executable or shared library) and which function, Swift
/// names demangled. Off every deadline: it reads symbol tables from disk the first time an image
/// is asked about.
///
/// `dladdr` gives the image and, for shared libraries, the exported symbol; executables export
/// no symbols (SwiftPM does not link them with `-rdynamic`), so their functions are looked up in
/// the file's own ELF symbol table (`.symtab`), when it has not been stripped.
final class Symbolicator: Sendable {
    static let shared = Symbolicator()

    private struct Image {
        /// Function symbols by start address (relative to the load base), sorted.
        var symbols: [(start: UInt, size: UInt, name: String)]
    }

    private let images = Lock<[String: Image]>([:])
    private let names = Lock<[String: String]>([:])

    /// The frame for `address`, named after the function containing `lookup` (for a return
    /// address, the call instruction just before it).
    func frame(for address: UInt, lookup: UInt) -> StackFrame {
        var file: UnsafePointer<CChar>?
        var fileBase: UInt = 0
        var symbol: UnsafePointer<CChar>?
        var symbolAddress: UInt = 0
        guard cshims_dladdr(UnsafeRawPointer(bitPattern: lookup), &file, &fileBase, &symbol, &symbolAddress) == 1,
            let file
        else {
            return StackFrame(address: address)
        }
        // The main executable's entry has an empty name.
        let path = file.pointee == 0 ? "/proc/self/exe" : String(cString: file)
        let imageName = path == "/proc/self/exe" ? Self.executableName : path.split(separator: "/").last.map(String.init) ?? path
        let base = fileBase
        if let found = symtabSymbol(path: path, offset: lookup &- base) {
            return StackFrame(address: address, symbol: demangled(found.name), offset: address &- base &- found.start, image: imageName)
        }
        if let name = symbol {
            let start = symbolAddress
            return StackFrame(address: address, symbol: demangled(String(cString: name)), offset: address &- start, image: imageName)
        }
        return StackFrame(address: address, image: imageName)
    }

    private static let executableName: String = {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard n > 0 else { return "executable" }
        let path = String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return path.split(separator: "/").last.map(String.init) ?? path
    }()

    /// A Swift symbol demangled, or the name as it is.
    func demangled(_ name: String) -> String {
        if let known = names.withLock({ $0[name] }) { return known }
        var result = name
        if name.hasPrefix("$s") || name.hasPrefix("_$s") || name.hasPrefix("$S") {
            let output = name.withCString { swiftDemangle($0, UInt(strlen($0)), nil, nil, 0) }
            if let output {
                result = String(cString: output)
                free(output)
            }
        }
        names.withLock { $0[name] = result }
        return result
    }

    private func symtabSymbol(path: String, offset: UInt) -> (start: UInt, name: String)? {
        let image = images.withLock { $0[path] } ?? load(path)
        let symbols = image.symbols
        var low = 0
        var high = symbols.count
        while low < high {
            let mid = (low + high) / 2
            if symbols[mid].start <= offset { low = mid + 1 } else { high = mid }
        }
        guard low > 0 else { return nil }
        let candidate = symbols[low - 1]
        guard candidate.size == 0 || offset < candidate.start + candidate.size else { return nil }
        return (candidate.start, candidate.name)
    }

    private func load(_ path: String) -> Image {
        let image = Image(symbols: ELFSymbols.functions(inFile: path))
        images.withLock { $0[path] = image }
        return image
    }
}

/// Reads the function symbols of an ELF64 file's `.symtab` (empty when the file has none).
enum ELFSymbols {
    static func functions(inFile path: String) -> [(start: UInt, size: UInt, name: String)] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return [] }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_size > 64 else { return [] }
        let size = Int(info.st_size)
        guard let map = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), map != MAP_FAILED else { return [] }
        defer { munmap(map, size) }
        let bytes = UnsafeRawBufferPointer(start: map, count: size)
        return parse(bytes)
    }

    static func parse(_ file: UnsafeRawBufferPointer) -> [(start: UInt, size: UInt, name: String)] {
        func read<T: FixedWidthInteger>(_ offset: Int, as: T.Type) -> T? {
            guard offset >= 0, offset + MemoryLayout<T>.size <= file.count else { return nil }
            return file.loadUnaligned(fromByteOffset: offset, as: T.self)
        }
        // "\x7fELF", 64-bit, little-endian.
        guard file.count > 64, file[0] == 0x7F, file[1] == 0x45, file[2] == 0x4C, file[3] == 0x46,
            file[4] == 2, file[5] == 1,
            let sectionOffset = read(0x28, as: UInt64.self), let entrySize = read(0x3A, as: UInt16.self),
            let count = read(0x3C, as: UInt16.self), entrySize >= 64
        else { return [] }
        func section(_ index: Int) -> (type: UInt32, offset: Int, size: Int, link: Int, entrySize: Int)? {
            let base = Int(sectionOffset) + index * Int(entrySize)
            guard let type = read(base + 4, as: UInt32.self), let offset = read(base + 24, as: UInt64.self),
                let size = read(base + 32, as: UInt64.self), let link = read(base + 40, as: UInt32.self),
                let entry = read(base + 56, as: UInt64.self)
            else { return nil }
            return (type, Int(offset), Int(size), Int(link), Int(entry))
        }
        let symtabType: UInt32 = 2
        guard let symtab = (0..<Int(count)).lazy.compactMap({ section($0) }).first(where: { $0.type == symtabType }),
            symtab.entrySize >= 24, let strings = section(symtab.link),
            symtab.offset + symtab.size <= file.count, strings.offset + strings.size <= file.count
        else { return [] }
        var result: [(start: UInt, size: UInt, name: String)] = []
        let total = symtab.size / symtab.entrySize
        result.reserveCapacity(total / 2)
        for index in 0..<total {
            let base = symtab.offset + index * symtab.entrySize
            guard let nameOffset = read(base, as: UInt32.self), let infoByte = read(base + 4, as: UInt8.self),
                let value = read(base + 8, as: UInt64.self), let size = read(base + 16, as: UInt64.self)
            else { continue }
            let functionType: UInt8 = 2
            guard infoByte & 0xF == functionType, value != 0 else { continue }
            let start = strings.offset + Int(nameOffset)
            guard start < strings.offset + strings.size else { continue }
            var end = start
            while end < strings.offset + strings.size, file[end] != 0 { end += 1 }
            let name = String(decoding: UnsafeRawBufferPointer(rebasing: file[start..<end]), as: UTF8.self)
            result.append((UInt(value), UInt(size), name))
        }
        result.sort { $0.start < $1.start }
        return result
    }
}
