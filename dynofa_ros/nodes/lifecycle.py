"""What the package's lifecycle nodes share: configuring and activating themselves at start-up
(``auto_activate``), and giving back at cleanup everything configure made, so a node can be
configured again."""

from __future__ import annotations

from typing import Any

from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import TransitionCallbackReturn


class ManagedNode(LifecycleNode):
    """A lifecycle node whose configure puts what it creates in :attr:`config_subs`,
    :attr:`config_timers`, :attr:`config_pubs` and :attr:`diag_pub`; :meth:`release_endpoints`
    destroys them."""

    def __init__(self, name: str, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.config_subs: list[Any] = []
        self.config_timers: list[Any] = []
        self.config_pubs: dict[str, Any] = {}
        self.diag_pub: Any = None
        self._boot: Any = None

    def activate_when_spinning(self) -> None:
        """Configure and activate once the executor runs (``auto_activate``)."""
        self._boot = self.create_timer(0.0, self._auto_activate)

    def prepare(self) -> bool:
        """Work before the configure transition; ``False`` ends the start-up (interrupted)."""
        return True

    def _auto_activate(self) -> None:
        if self._boot is not None:
            self._boot.cancel()
            self.destroy_timer(self._boot)
            self._boot = None
        if not self.prepare():
            return
        if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()

    def release_endpoints(self) -> None:
        for sub in self.config_subs:
            self.destroy_subscription(sub)
        for timer in self.config_timers:
            timer.cancel()
            self.destroy_timer(timer)
        for pub in self.config_pubs.values():
            self.destroy_lifecycle_publisher(pub)
        if self.diag_pub is not None:
            self.destroy_publisher(self.diag_pub)
        self.config_subs, self.config_timers, self.config_pubs, self.diag_pub = [], [], {}, None
