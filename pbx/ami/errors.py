"""What the AMI client raises: every error is an :class:`AMIError`."""

from __future__ import annotations

from pbx.ami.protocol import Message

__all__ = [
    "AMIActionError", "AMIAuthenticationError", "AMIConnectionLost", "AMIError",
    "AMIMessageTooLarge", "AMINotConnected", "AMITimeout",
]


class AMIError(Exception):
    """Base of every AMI client error."""


class AMIActionError(AMIError):
    """Asterisk answered ``Response: Error``; ``response`` is its message."""

    def __init__(self, action: str, response: Message) -> None:
        super().__init__(f"{action}: {response.get('Message') or response.name}")
        self.action = action
        self.response = response


class AMITimeout(AMIError):
    """No (complete) answer to an action within its timeout."""


class AMIConnectionLost(AMIError):
    """The connection dropped while the action was pending; it was not resent."""


class AMIAuthenticationError(AMIError):
    """Login was refused."""


class AMINotConnected(AMIError):
    """No logged-in AMI connection right now."""


class AMIMessageTooLarge(AMIError):
    """The answer broke the parser's line or message size limit and was dropped."""
