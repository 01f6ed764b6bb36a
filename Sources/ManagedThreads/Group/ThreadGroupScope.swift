// `withThreadGroup`: a scope whose child group is shut down when the body returns.
/// Runs `body` with a new child group of ``ThreadGroup/current`` as the current group, then shuts
/// that group down: everything spawned inside (without naming another group) is stopped and joined.
///
/// Scopes nest and restore the outer group. Returns the body's value and the shutdown report.
@available(*, noasync, message: "blocks the calling thread; use the async withThreadGroup")
@_disfavoredOverload
@discardableResult
public func withThreadGroup<R>(
    _ name: String, timeout: Duration = .seconds(10), policy: ShutdownPolicy = .shared,
    _ body: (ThreadGroup) throws -> R
) throws -> (value: R, report: ShutdownReport) {
    let group = try ThreadGroup.current.makeChild(name: name)
    let value: R
    do {
        value = try ThreadGroup.$scoped.withValue(group) { try body(group) }
    } catch {
        _ = group.shutdown(timeout: timeout, policy: policy)
        throw error
    }
    return (value, group.shutdown(timeout: timeout, policy: policy))
}

/// Async form of ``withThreadGroup(_:timeout:policy:_:)-921ub``.
@discardableResult
public func withThreadGroup<R>(
    _ name: String, timeout: Duration = .seconds(10), policy: ShutdownPolicy = .shared,
    _ body: (ThreadGroup) async throws -> R
) async throws -> (value: R, report: ShutdownReport) {
    let group = try ThreadGroup.current.makeChild(name: name)
    let value: R
    do {
        value = try await ThreadGroup.$scoped.withValue(group) { try await body(group) }
    } catch {
        _ = await group.shutdown(timeout: timeout, policy: policy)
        throw error
    }
    return (value, await group.shutdown(timeout: timeout, policy: policy))
}
