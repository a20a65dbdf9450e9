//! [`ClientOptions`]: how a client connects and how long it waits.

use std::time::Duration;

/// How a [`crate::Client`] connects and bounds its requests.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// The shared secret the server requires, if any.
    pub token: Option<Vec<u8>>,
    /// How long to wait for the TCP connection and the handshake's response.
    pub connect_timeout: Duration,
    /// How long a request waits for its response, from the moment it is queued (the wait
    /// for an in-flight slot included). A request that passes it fails with
    /// [`crate::Error::Timeout`]: its outcome is unknown.
    pub request_timeout: Duration,
    /// Most requests in flight on the connection; a request past it waits for a slot.
    /// The client also stays within the server's announced `in_flight_max`.
    pub in_flight_max: u32,
    /// Whether a request on a broken connection opens a new one (within
    /// `connect_timeout`) instead of failing with [`crate::Error::Closed`]. Requests in
    /// flight when it broke still fail with [`crate::Error::ConnectionLost`].
    pub reconnect: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            token: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            in_flight_max: 256,
            reconnect: true,
        }
    }
}

impl ClientOptions {
    /// The defaults with this token.
    pub fn with_token(mut self, token: impl Into<Vec<u8>>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The same options with this request timeout.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The same options with reconnecting on or off.
    pub fn with_reconnect(mut self, reconnect: bool) -> Self {
        self.reconnect = reconnect;
        self
    }

    /// The same options with this in-flight bound.
    pub fn with_in_flight_max(mut self, in_flight_max: u32) -> Self {
        self.in_flight_max = in_flight_max;
        self
    }
}
