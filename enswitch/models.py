"""Tables of the project itself (not of one app's domain)."""

from __future__ import annotations

from django.db import models


class LoginFailures(models.Model):
    """Login attempts counted for one key (a digest of username, address or both).

    Rows are only ever changed by single atomic statements (enswitch/api/throttle.py),
    never evicted: a row disappears only once `expires` has passed. `expires` is a Unix
    time in seconds; the index lets expired rows be pruned without a full scan.
    """

    key = models.CharField(max_length=64, primary_key=True)
    count = models.IntegerField()
    expires = models.FloatField(db_index=True)

    class Meta:
        verbose_name = "login failure counter"

    def __str__(self) -> str:
        return f"{self.key[:12]}: {self.count}"
