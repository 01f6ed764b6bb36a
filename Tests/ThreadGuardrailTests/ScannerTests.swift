import Testing
import ThreadGuardrail

/// The rules that match in `source`, in order.
func rules(in source: String) -> [Rule] {
    Scanner.scan(path: "File.swift", text: source).findings.map(\.rule)
}

@Suite("Scanner: what is flagged")
struct FlaggedTests {
    @Test("Foundation thread creation is Thread.init", arguments: [
        "let t = Thread(block: { work() })",
        "let t = Thread { work() }",
        "let t = Thread(target: self, selector: #selector(run), object: nil)",
        "let t = Thread.init(block: { })",
        "let t = Thread.init { }",
        "let t = Foundation.Thread(block: { })",
        "let t = Foundation.Thread { }",
        "let t = Thread ( block: { } )",
        "threads.append(Thread { })",
        "start(thread: Thread { work() })",
        "let all = [Thread { }, Thread { }].count == 2 ? 1 : 0; _ = all",
        "return Thread {\n    work()\n}",
        "let make = Thread.init",
    ])
    func threadInit(source: String) {
        let found = rules(in: source)
        #expect(!found.isEmpty)
        #expect(found.allSatisfy { $0 == .threadInit })
    }

    @Test("Thread.detachNewThread and its selector form", arguments: [
        "Thread.detachNewThread { work() }",
        "Thread.detachNewThread(work)",
        "Foundation.Thread.detachNewThread { }",
        "Thread.detachNewThreadSelector(#selector(run), toTarget: self, with: nil)",
    ])
    func detach(source: String) {
        #expect(rules(in: source) == [.detachNewThread])
    }

    @Test("pthread_create, called or qualified by a C module", arguments: [
        "let rc = pthread_create(&handle, nil, start, nil)",
        "precondition(pthread_create(&h, &attr, { _ in nil }, ctx) == 0)",
        "_ = Glibc.pthread_create(&h, nil, f, nil)",
        "let create = pthread_create",
    ])
    func pthreadCreate(source: String) {
        #expect(rules(in: source) == [.pthreadCreate])
    }

    @Test("DispatchQueue.global(...).async with any arguments is a warning", arguments: [
        "DispatchQueue.global().async { work() }",
        "DispatchQueue.global(qos: .utility).async { work() }",
        "DispatchQueue.global(qos: .userInitiated).async(execute: item)",
        "DispatchQueue.global(priority: f(x)).async { }",
        "Dispatch.DispatchQueue.global().async { }",
        "DispatchQueue\n    .global(qos: .background)\n    .async {\n        work()\n    }",
    ])
    func globalAsync(source: String) {
        #expect(rules(in: source) == [.globalQueueAsync])
        #expect(Rule.globalQueueAsync.severity == .warning)
    }

    @Test("creation rules are errors")
    func severities() {
        #expect(Rule.threadInit.severity == .error)
        #expect(Rule.detachNewThread.severity == .error)
        #expect(Rule.pthreadCreate.severity == .error)
    }

    @Test("positions are 1-based lines and UTF-8 columns of the expression's start")
    func positions() {
        let source = """
            import Foundation
            let é = 1; let t = Thread { }
                let rc = Glibc.pthread_create(&h, nil, f, nil)
            """
        let findings = Scanner.scan(path: "Sources/App/main.swift", text: source).findings
        #expect(findings == [
            // "é" is two bytes in UTF-8, as a compiler counts it.
            Finding(path: "Sources/App/main.swift", line: 2, column: 21, rule: .threadInit),
            Finding(path: "Sources/App/main.swift", line: 3, column: 14, rule: .pthreadCreate),
        ])
    }

    @Test("every occurrence in a file is reported")
    func several() {
        let source = """
            let a = Thread { }
            let b = Thread(block: { })
            pthread_create(&h, nil, f, nil); pthread_create(&g, nil, f, nil)
            """
        #expect(rules(in: source) == [.threadInit, .threadInit, .pthreadCreate, .pthreadCreate])
    }
}

@Suite("Scanner: what is not flagged")
struct NotFlaggedTests {
    @Test("lookalike identifiers and uses of Thread that create nothing", arguments: [
        "let t = try ManagedThread.spawn(name: \"w\") { _ in }",
        "let t = ManagedThread(name: name, purpose: nil, options: options, body: body)",
        "let t = MyThread(block: { })",
        "let t = MyThread { }",
        "swift run threadbench --smoke",
        "let threadbench = 1",
        "try pthreadCall(.pthreadCreate) { cshims_thread_create(&handle, stack, size, start, arg) }",
        "print(Thread.current)",
        "Thread.sleep(forTimeInterval: 0.1)",
        "if Thread.isMainThread { work() }",
        "let name = Thread.current.name",
        "let threads: [Thread] = []",
        "let x = Thread.self",
        "let y = worker.Thread(block: { })",
        "let z = SystemCall.pthread_create",
        "let q = Other.pthread_create(&h, nil, f, nil)",
        "func pthread_create() { }",
        "func Thread(_ x: Int) -> Int { x }",
    ])
    func lookalikes(source: String) {
        #expect(rules(in: source) == [])
    }

    @Test("Thread as a type before a brace", arguments: [
        "extension Thread {\n    func x() { }\n}",
        "final class Worker: Thread {\n    override func main() { }\n}",
        "class Worker: NSObject, Thread {\n}",
        "func make() -> Thread {\n    fatalError()\n}",
        "var worker: Thread {\n    storage\n}",
        "if let t = object as? Thread {\n    t.cancel()\n}",
        "if object is Thread {\n    work()\n}",
        "func f<T>(_ t: T) where T: Thread {\n}",
    ])
    func typeContexts(source: String) {
        #expect(rules(in: source) == [])
    }

    @Test("other Dispatch calls", arguments: [
        "DispatchQueue.main.async { work() }",
        "queue.async { work() }",
        "DispatchQueue.global().sync { work() }",
        "DispatchQueue.global().asyncAfter(deadline: .now() + 1) { work() }",
        "DispatchQueue.global(qos: .utility).asyncAndWait { work() }",
        "let q = DispatchQueue.global(qos: .utility)",
        "DispatchQueue(label: \"x\").async { work() }",
    ])
    func dispatch(source: String) {
        #expect(rules(in: source) == [])
    }
}

@Suite("Scanner: comments and string literals")
struct CommentsAndStringsTests {
    @Test("matches inside comments and literals are ignored", arguments: [
        "// let t = Thread { }",
        "let a = 1 // pthread_create(&h, nil, f, nil)",
        "/* Thread(block: { }) */",
        "/*\n Thread.detachNewThread { }\n pthread_create(&h, nil, f, nil)\n*/",
        "/* outer /* nested */ Thread { } still a comment */",
        "/// Calls `pthread_create` through the shim.",
        "let s = \"Thread(block: { })\"",
        "let s = \"escaped \\\" Thread { } quote\"",
        "let s = \"\"\"\n    let t = Thread { }\n    pthread_create(&h, nil, f, nil)\n    \"\"\"",
        "let s = \"\"\"\n    a \"quoted\" Thread { } and \"\" pairs\n    \"\"\"",
        "let s = #\"Thread { } \"quoted\" pthread_create\"#",
        "let s = ##\"a \"# Thread { } \"##",
        "let s = #\"\"\"\n    Thread { }\n    \"\"\"#",
        "let s = \"\\(\"Thread { }\")\"",
        "let r = #/Thread\\(/#",
        "let s = \"DispatchQueue.global().async { }\"",
    ])
    func ignored(source: String) {
        #expect(rules(in: source) == [])
    }

    @Test("code around and after literals and comments is still scanned", arguments: [
        "let s = \"a\"; let t = Thread { }",
        "/* a comment */ let t = Thread { }",
        "/* outer /* nested */ still */ let t = Thread { }",
        "let s = \"\"\"\n    text\n    \"\"\"\nlet t = Thread { }",
        "let s = #\"a \\\" b\"#; let t = Thread { }",
        "let s = \"back\\\\\"; let t = Thread { }",
        "let s = \"interpolated \\(Thread { })\"",
        "let s = #\"raw interpolation \\#(Thread { })\"#",
        "let s = \"\\(f(\"(\", g(\")\")))\"; let t = Thread { }",
        "let s = \"unterminated\nlet t = Thread { }",
    ])
    func scanned(source: String) {
        #expect(rules(in: source) == [.threadInit])
    }

    @Test("masking keeps offsets, lines and columns")
    func maskKeepsLayout() {
        let source = "let s = \"Thread\" // c\n/* x\ny */ z"
        let masked = SwiftLexer.mask(source)
        #expect(masked.code.count == source.utf8.count)
        // `"Thread"` and `// c` become spaces; the block comment keeps its newline.
        let expected = "let s =" + String(repeating: " ", count: 14) + "\n" + "    \n" + "     z"
        #expect(String(decoding: masked.code, as: UTF8.self) == expected)
    }
}
