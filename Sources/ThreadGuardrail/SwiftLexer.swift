/// Swift source with everything that is not code blanked out, so that rules match code only.
package struct MaskedSource: Sendable {
    /// The source's UTF-8 bytes, the same length as the input, with every byte of a comment or a
    /// string literal (delimiters included) replaced by a space. Newlines are kept, so byte offsets,
    /// lines and columns are those of the original text. Code inside a string interpolation
    /// (`"\(expr)"`) stays, because it runs.
    package var code: [UInt8]
    /// 1-based lines on which a comment carries the inline opt-out marker (`check-threads: allow`).
    package var optOutLines: Set<Int>
    /// The byte offset at which each line starts; `lineStarts[0] == 0` is line 1.
    package var lineStarts: [Int]

    /// The 1-based line and column (in UTF-8 bytes, as compilers count) of a byte offset.
    package func position(of offset: Int) -> (line: Int, column: Int) {
        // The last line start at or before `offset`.
        var low = 0
        var high = lineStarts.count - 1
        while low < high {
            let mid = (low + high + 1) / 2
            if lineStarts[mid] <= offset { low = mid } else { high = mid - 1 }
        }
        return (low + 1, offset - lineStarts[low] + 1)
    }
}

/// A lexer-ish pass over Swift source: enough of the grammar to tell code from comments and string
/// literals, which is all the guardrail needs.
///
/// It understands `//` and nested `/* */` comments; `"…"` and `"""…"""` literals with escapes;
/// raw literals (`#"…"#`, `##"""…"""##`) whose escapes need the same number of `#`s; interpolation,
/// which may itself hold strings and comments; and `#/…/#` regex literals. Bare `/…/` regex
/// literals are read as code, since telling them from division needs a real parser.
package enum SwiftLexer {
    /// The text of the inline opt-out marker, to be written in a comment on the flagged line.
    package static let optOutMarker = "check-threads: allow"

    private enum Frame {
        /// Code: the file itself, or an interpolation whose open parentheses are counted.
        case code(interpolationParens: Int?)
        /// A string literal with its number of `#`s.
        case string(hashes: Int, multiline: Bool)
    }

    /// Blanks out the comments and string literals of `text`.
    package static func mask(_ text: String) -> MaskedSource {
        let bytes = Array(text.utf8)
        var out = bytes
        var markerOffsets: [Int] = []
        var stack: [Frame] = [.code(interpolationParens: nil)]
        var i = 0
        let n = bytes.count

        func at(_ index: Int) -> UInt8? { index < n ? bytes[index] : nil }
        func blank(_ range: Range<Int>) {
            for j in range where out[j] != newline { out[j] = space }
        }
        /// The number of `#`s starting at `index`.
        func hashes(at index: Int) -> Int {
            var j = index
            while j < n && bytes[j] == hash { j += 1 }
            return j - index
        }
        /// Whether `"` (or `"""`) followed by `count` hashes starts at `index`.
        func isCloser(at index: Int, quotes: Int, hashes count: Int) -> Bool {
            guard index + quotes + count <= n else { return false }
            for j in 0..<quotes where bytes[index + j] != quote { return false }
            for j in 0..<count where bytes[index + quotes + j] != hash { return false }
            return true
        }
        func noteMarkers(in range: Range<Int>) {
            markerOffsets += occurrences(of: optOutMarker, in: bytes, range: range)
        }

        while i < n {
            switch stack[stack.count - 1] {
            case .code(let parens):
                let c = bytes[i]
                if c == slash && at(i + 1) == slash {
                    var end = i
                    while end < n && bytes[end] != newline { end += 1 }
                    noteMarkers(in: i..<end)
                    blank(i..<end)
                    i = end
                } else if c == slash && at(i + 1) == star {
                    // Swift block comments nest.
                    var depth = 0
                    var end = i
                    while end < n {
                        if bytes[end] == slash && at(end + 1) == star {
                            depth += 1
                            end += 2
                        } else if bytes[end] == star && at(end + 1) == slash {
                            depth -= 1
                            end += 2
                            if depth == 0 { break }
                        } else {
                            end += 1
                        }
                    }
                    noteMarkers(in: i..<end)
                    blank(i..<end)
                    i = end
                } else if c == quote || c == hash {
                    let count = hashes(at: i)
                    let start = i + count
                    if at(start) == quote {
                        let multiline = isCloser(at: start, quotes: 3, hashes: 0)
                        let opener = start + (multiline ? 3 : 1)
                        blank(i..<opener)
                        stack.append(.string(hashes: count, multiline: multiline))
                        i = opener
                    } else if count > 0 && at(start) == slash {
                        // An extended regex literal, #/…/#: ends at `/` followed by as many `#`s.
                        var end = start + 1
                        while end < n && !(bytes[end] == slash && hashes(at: end + 1) >= count) { end += 1 }
                        end = min(n, end + 1 + count)
                        blank(i..<end)
                        i = end
                    } else {
                        // `#if`, `#selector`, …: code.
                        i = max(start, i + 1)
                    }
                } else if c == openParen, let depth = parens {
                    stack[stack.count - 1] = .code(interpolationParens: depth + 1)
                    i += 1
                } else if c == closeParen, let depth = parens {
                    if depth == 0 {
                        // The parenthesis that closes the interpolation belongs to the string.
                        blank(i..<(i + 1))
                        stack.removeLast()
                    } else {
                        stack[stack.count - 1] = .code(interpolationParens: depth - 1)
                    }
                    i += 1
                } else {
                    i += 1
                }
            case .string(let count, let multiline):
                let c = bytes[i]
                if c == backslash && hashes(at: i + 1) >= count {
                    let after = i + 1 + count
                    if at(after) == openParen {
                        blank(i..<(after + 1))
                        stack.append(.code(interpolationParens: 0))
                        i = after + 1
                    } else {
                        // An escape: skip the escaped character so `\"` does not end the string.
                        let end = min(n, after + 1)
                        blank(i..<end)
                        i = end
                    }
                } else if c == quote && isCloser(at: i, quotes: multiline ? 3 : 1, hashes: count) {
                    let end = i + (multiline ? 3 : 1) + count
                    blank(i..<end)
                    stack.removeLast()
                    i = end
                } else if c == newline && !multiline {
                    // An unterminated single-line literal: the compiler rejects it; resume as code.
                    stack.removeLast()
                    i += 1
                } else {
                    blank(i..<(i + 1))
                    i += 1
                }
            }
        }

        var lineStarts = [0]
        for (offset, byte) in bytes.enumerated() where byte == newline { lineStarts.append(offset + 1) }
        var masked = MaskedSource(code: out, optOutLines: [], lineStarts: lineStarts)
        masked.optOutLines = Set(markerOffsets.map { masked.position(of: $0).line })
        return masked
    }

    /// Byte offsets at which `needle` occurs within `range` of `haystack`.
    private static func occurrences(of needle: String, in haystack: [UInt8], range: Range<Int>) -> [Int] {
        let pattern = Array(needle.utf8)
        guard range.count >= pattern.count else { return [] }
        var found: [Int] = []
        for start in range.lowerBound...(range.upperBound - pattern.count)
        where haystack[start..<(start + pattern.count)].elementsEqual(pattern) {
            found.append(start)
        }
        return found
    }
}

let newline = UInt8(ascii: "\n")
let space = UInt8(ascii: " ")
let slash = UInt8(ascii: "/")
let star = UInt8(ascii: "*")
let quote = UInt8(ascii: "\"")
let hash = UInt8(ascii: "#")
let backslash = UInt8(ascii: "\\")
let openParen = UInt8(ascii: "(")
let closeParen = UInt8(ascii: ")")
