/// Why a stop was requested. Carried by the token and shown in shutdown reports.
public struct StopReason: Sendable, Hashable, Codable, CustomStringConvertible {
    /// The category of the request.
    public struct Kind: RawRepresentable, Sendable, Hashable, Codable, CustomStringConvertible {
        /// The category's name, as it appears in reports and JSON (`"shutdown"`, `"deadline"`, …).
        public let rawValue: String
        /// Creates a category from its name; use it for categories of your own beside the ones below.
        public init(rawValue: String) { self.rawValue = rawValue }
        /// The category's name, ``rawValue``.
        public var description: String { rawValue }

        /// Somebody called `requestStop` without saying more.
        public static let requested = Kind(rawValue: "requested")
        /// The owning group or the process is shutting down.
        public static let shutdown = Kind(rawValue: "shutdown")
        /// A parent group was stopped and the stop cascaded down.
        public static let parentStopped = Kind(rawValue: "parentStopped")
        /// A deadline passed.
        public static let deadline = Kind(rawValue: "deadline")
        /// A signal arrived (SIGTERM, SIGINT, …).
        public static let signal = Kind(rawValue: "signal")
        /// A reason defined by the user; see ``StopReason/message``.
        public static let user = Kind(rawValue: "user")
    }

    /// The category.
    public var kind: Kind
    /// Free text for diagnostics, if any.
    public var message: String?

    /// Creates a reason of `kind` with an optional message.
    public init(_ kind: Kind, message: String? = nil) {
        self.kind = kind
        self.message = message
    }

    /// A plain request.
    public static let requested = StopReason(.requested)
    /// Shutdown of the owning group or process.
    public static let shutdown = StopReason(.shutdown)
    /// A parent group was stopped.
    public static let parentStopped = StopReason(.parentStopped)
    /// A deadline passed.
    public static let deadline = StopReason(.deadline)
    /// A user-defined reason with a message.
    public static func user(_ message: String) -> StopReason { StopReason(.user, message: message) }

    /// The kind, then the message if there is one: `shutdown` or `user: config reloaded`.
    public var description: String {
        message.map { "\(kind): \($0)" } ?? kind.rawValue
    }
}
