/// A path pattern in the style of `fnmatch(3)` with `FNM_PATHNAME`, plus `**`.
///
/// - `*` matches any run of characters within one path component (never `/`);
/// - `?` matches one character other than `/`;
/// - `[abc]`, `[a-z]`, `[!abc]` (or `[^abc]`) match one character from (or not from) a set;
/// - `**` matches any run of characters including `/`; `**/` matches zero or more directories, so
///   `Tests/**/*.swift` matches `Tests/A.swift` and `Tests/A/B/C.swift`;
/// - `\` makes the next character literal;
/// - a pattern ending in `/` names a directory and matches everything below it.
///
/// The whole path must match: `main.swift` matches only a `main.swift` at the root; write
/// `**/main.swift` for any of them. A leading `./` is ignored in patterns and paths.
package struct Glob: Sendable, Equatable, CustomStringConvertible {
    /// The pattern as written.
    package let description: String
    private let pattern: [UInt8]

    /// A glob for `pattern`.
    package init(_ pattern: String) {
        description = pattern
        var bytes = Array(Glob.normalized(pattern).utf8)
        if bytes.last == slash { bytes += Array("**".utf8) }
        self.pattern = bytes
    }

    /// Whether the whole of `path` matches.
    package func matches(_ path: String) -> Bool {
        Glob.match(pattern, 0, Array(Glob.normalized(path).utf8), 0)
    }

    private static func normalized(_ path: String) -> Substring {
        var path = Substring(path)
        while path.hasPrefix("./") { path = path.dropFirst(2) }
        return path
    }

    private static func match(_ p: [UInt8], _ pi: Int, _ s: [UInt8], _ si: Int) -> Bool {
        var pi = pi
        var si = si
        while pi < p.count {
            let c = p[pi]
            if c == star && pi + 1 < p.count && p[pi + 1] == star {
                let rest = pi + 2
                if rest < p.count && p[rest] == slash {
                    // `**/`: zero directories, or any prefix that ends at a `/`.
                    if match(p, rest + 1, s, si) { return true }
                    for j in si..<s.count where s[j] == slash {
                        if match(p, rest + 1, s, j + 1) { return true }
                    }
                    return false
                }
                for j in si...s.count where match(p, rest, s, j) { return true }
                return false
            }
            if c == star {
                var j = si
                while true {
                    if match(p, pi + 1, s, j) { return true }
                    if j == s.count || s[j] == slash { return false }
                    j += 1
                }
            }
            guard si < s.count else { return false }
            switch c {
            case UInt8(ascii: "?"):
                guard s[si] != slash else { return false }
            case UInt8(ascii: "["):
                guard let (matched, end) = matchClass(p, pi, s[si]) else {
                    // No closing `]`: a literal `[`.
                    guard s[si] == c else { return false }
                    break
                }
                guard matched, s[si] != slash else { return false }
                pi = end - 1
            case backslash where pi + 1 < p.count:
                pi += 1
                guard s[si] == p[pi] else { return false }
            default:
                guard s[si] == c else { return false }
            }
            pi += 1
            si += 1
        }
        return si == s.count
    }

    /// Matches `byte` against the bracket expression that starts at `p[start]` (`[`). Returns
    /// whether it matched and the index after the closing `]`, or nil if there is no `]`.
    private static func matchClass(_ p: [UInt8], _ start: Int, _ byte: UInt8) -> (Bool, Int)? {
        var i = start + 1
        let negated = i < p.count && (p[i] == UInt8(ascii: "!") || p[i] == UInt8(ascii: "^"))
        if negated { i += 1 }
        var matched = false
        var first = true
        while i < p.count {
            let c = p[i]
            if c == UInt8(ascii: "]") && !first { return (matched != negated, i + 1) }
            first = false
            if i + 2 < p.count && p[i + 1] == UInt8(ascii: "-") && p[i + 2] != UInt8(ascii: "]") {
                if c <= byte && byte <= p[i + 2] { matched = true }
                i += 3
            } else {
                if c == byte { matched = true }
                i += 1
            }
        }
        return nil
    }
}
