/// One place in a source file where a rule matched.
package struct Finding: Sendable, Equatable {
    /// The path as printed (relative to where the command runs, usually the package root).
    package var path: String
    /// The path the allowlist's globs are matched against (relative to the package root, or to
    /// `--root`).
    package var matchPath: String
    /// 1-based line.
    package var line: Int
    /// 1-based column, in UTF-8 bytes.
    package var column: Int
    /// The rule that matched.
    package var rule: Rule

    package init(path: String, matchPath: String? = nil, line: Int, column: Int, rule: Rule) {
        self.path = path
        self.matchPath = matchPath ?? path
        self.line = line
        self.column = column
        self.rule = rule
    }
}

/// Finds raw thread creation in Swift source.
package enum Scanner {
    /// The findings in one file, in source order, before any allowlist is applied. Findings on a
    /// line whose comment carries the inline opt-out are left out, and counted in `optedOut`.
    package static func scan(
        path: String, matchPath: String? = nil, text: String
    ) -> (findings: [Finding], optedOut: Int) {
        let masked = SwiftLexer.mask(text)
        var findings: [Finding] = []
        var optedOut = 0
        for (offset, rule) in matches(in: tokenize(masked.code)) {
            let (line, column) = masked.position(of: offset)
            if masked.optOutLines.contains(line) {
                optedOut += 1
                continue
            }
            findings.append(Finding(path: path, matchPath: matchPath, line: line, column: column, rule: rule))
        }
        return (findings, optedOut)
    }

    // MARK: Tokens

    struct Token {
        var text: Substring
        var isIdentifier: Bool
        var offset: Int
    }

    /// Splits masked code into identifiers (keywords included), single-character punctuation
    /// (`( ) [ ] { } , : ; . ? !` and the backtick) and runs of other operator characters (`->`, `==`, `...`).
    static func tokenize(_ code: [UInt8]) -> [Token] {
        let text = Substring(decoding: code, as: UTF8.self)
        let utf8 = text.utf8
        var tokens: [Token] = []
        var index = utf8.startIndex
        func offset(_ i: Substring.UTF8View.Index) -> Int { utf8.distance(from: utf8.startIndex, to: i) }

        while index < utf8.endIndex {
            let c = utf8[index]
            if c == space || c == newline || c == UInt8(ascii: "\t") || c == UInt8(ascii: "\r") {
                index = utf8.index(after: index)
            } else if isIdentifierHead(c) || isDigit(c) {
                // Numbers are read like identifiers; no rule looks at them.
                let start = index
                while index < utf8.endIndex, isIdentifierHead(utf8[index]) || isDigit(utf8[index]) {
                    index = utf8.index(after: index)
                }
                tokens.append(Token(text: text[start..<index], isIdentifier: !isDigit(c), offset: offset(start)))
            } else if c == UInt8(ascii: "."), index < utf8.index(before: utf8.endIndex),
                utf8[utf8.index(after: index)] == UInt8(ascii: ".")
            {
                let start = index
                while index < utf8.endIndex, isOperator(utf8[index]) { index = utf8.index(after: index) }
                tokens.append(Token(text: text[start..<index], isIdentifier: false, offset: offset(start)))
            } else if isPunctuation(c) {
                let next = utf8.index(after: index)
                tokens.append(Token(text: text[index..<next], isIdentifier: false, offset: offset(index)))
                index = next
            } else if isOperator(c) {
                let start = index
                while index < utf8.endIndex, isOperator(utf8[index]), !isPunctuation(utf8[index]) {
                    index = utf8.index(after: index)
                }
                if start == index { index = utf8.index(after: index) }
                tokens.append(Token(text: text[start..<index], isIdentifier: false, offset: offset(start)))
            } else {
                let next = utf8.index(after: index)
                tokens.append(Token(text: text[index..<next], isIdentifier: false, offset: offset(index)))
                index = next
            }
        }
        return tokens
    }

    private static func isDigit(_ c: UInt8) -> Bool { c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") }
    private static func isIdentifierHead(_ c: UInt8) -> Bool {
        (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z"))
            || c == UInt8(ascii: "_") || c == UInt8(ascii: "$") || c >= 0x80
    }
    private static func isPunctuation(_ c: UInt8) -> Bool {
        "()[]{},:;.?!`".utf8.contains(c)
    }
    private static func isOperator(_ c: UInt8) -> Bool {
        "/=-+!*%<>&|^~?.".utf8.contains(c)
    }

    // MARK: Rules

    /// Modules through which `pthread_create` may be named (`Glibc.pthread_create`).
    private static let cModules: Set<Substring> = ["Glibc", "Musl", "Bionic", "Android", "Darwin", "Foundation"]
    /// Keywords after which `Thread {` is a type, not a call with a trailing closure.
    private static let typeContextKeywords: Set<Substring> = [
        "extension", "class", "struct", "enum", "protocol", "actor", "typealias", "func", "is", "as",
        "some", "any", "let", "var", "case", "import",
    ]

    /// Byte offsets of rule matches in `tokens`, with the rule.
    static func matches(in tokens: [Token]) -> [(offset: Int, rule: Rule)] {
        var found: [(Int, Rule)] = []
        // Open brackets around each token, to tell `f(thread: Thread { })` (an argument) from
        // `class Worker: Thread {` (a superclass).
        var brackets: [Substring] = []

        func text(_ k: Int) -> Substring? { k >= 0 && k < tokens.count ? tokens[k].text : nil }
        /// Where the expression naming `tokens[k]` starts, if it is unqualified or qualified by
        /// one of `modules`; nil if it is a member of something else (`x.Thread`).
        func start(of k: Int, modules: Set<Substring>) -> Int? {
            guard text(k - 1) == "." else { return k }
            guard k >= 2, tokens[k - 2].isIdentifier, modules.contains(tokens[k - 2].text), text(k - 3) != "." else {
                return nil
            }
            return k - 2
        }

        /// Whether `tokens[k]`, the token before `Thread {`, makes `Thread` a type.
        func isTypeContext(previous k: Int) -> Bool {
            guard let previous = text(k) else { return false }
            if tokens[k].isIdentifier { return typeContextKeywords.contains(previous) }
            switch previous {
            case "->", "&": return true
            case "?", "!": return text(k - 1) == "as"
            case ":", ",":
                // A superclass, conformance or type annotation, unless inside an argument list or a
                // collection literal.
                return brackets.last != "(" && brackets.last != "["
            default: return false
            }
        }

        func matchingParen(from open: Int) -> Int? {
            var depth = 0
            for j in open..<tokens.count {
                if tokens[j].text == "(" { depth += 1 }
                if tokens[j].text == ")" {
                    depth -= 1
                    if depth == 0 { return j }
                }
            }
            return nil
        }

        for k in tokens.indices {
            let token = tokens[k]
            defer {
                switch token.text {
                case "(", "[", "{": brackets.append(token.text)
                case ")", "]", "}": if !brackets.isEmpty { brackets.removeLast() }
                default: break
                }
            }
            guard token.isIdentifier else { continue }

            switch token.text {
            case "Thread":
                guard let first = start(of: k, modules: ["Foundation"]) else { continue }
                let offset = tokens[first].offset
                let previous = text(first - 1)
                switch text(k + 1) {
                case ".":
                    switch text(k + 2) {
                    case "init": found.append((offset, .threadInit))
                    case "detachNewThread", "detachNewThreadSelector": found.append((offset, .detachNewThread))
                    default: break  // Thread.current, Thread.sleep, Thread.isMainThread, …
                    }
                case "(":
                    if previous != "func" { found.append((offset, .threadInit)) }
                case "{":
                    if !isTypeContext(previous: first - 1) { found.append((offset, .threadInit)) }
                default:
                    break
                }
            case "pthread_create":
                guard let first = start(of: k, modules: cModules) else { continue }
                if let previous = text(first - 1), ["func", "case", "let", "var"].contains(previous) { continue }
                found.append((tokens[first].offset, .pthreadCreate))
            case "DispatchQueue":
                guard let first = start(of: k, modules: ["Dispatch", "Foundation"]),
                    text(k + 1) == ".", text(k + 2) == "global", text(k + 3) == "(",
                    let close = matchingParen(from: k + 3),
                    text(close + 1) == ".", text(close + 2) == "async"
                else { continue }
                found.append((tokens[first].offset, .globalQueueAsync))
            default:
                break
            }
        }
        return found
    }
}
