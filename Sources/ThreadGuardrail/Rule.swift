/// What the guardrail looks for. The raw value is the rule's name in output, in allowlist entries
/// and in inline opt-outs.
package enum Rule: String, CaseIterable, Sendable {
    /// `Thread(...)`, `Thread { }`, `Thread.init(...)`, `Foundation.Thread(...)`: a Foundation thread.
    case threadInit = "Thread.init"
    /// `Thread.detachNewThread { }` and `Thread.detachNewThreadSelector(_:toTarget:with:)`.
    case detachNewThread = "Thread.detachNewThread"
    /// `pthread_create`, called or referenced, bare or qualified by a C library module.
    case pthreadCreate = "pthread_create"
    /// `DispatchQueue.global(...).async`: work on Dispatch's shared pool, which starts threads of
    /// its own. A warning, since it is often fine for short work.
    case globalQueueAsync = "DispatchQueue.global.async"

    /// How a finding of this rule counts: errors fail the check, warnings only with `--strict`.
    package var severity: Severity {
        switch self {
        case .threadInit, .detachNewThread, .pthreadCreate: .error
        case .globalQueueAsync: .warning
        }
    }

    /// The rule called `name`, as written in an allowlist entry, or nil.
    package init?(name: String) {
        self.init(rawValue: name)
    }
}

/// Whether a finding fails the check.
package enum Severity: String, Sendable {
    /// Fails the check.
    case error
    /// Reported; fails the check only in strict mode.
    case warning
}
