"""E-mail delivery over SMTP with ``smtplib``: optional STARTTLS, optional login, one plain-text
message. I/O. Who calls it: :mod:`reconciler.engine.notifying`'s sender, with the credentials
it resolved from the channel's ``userFrom``/``passwordFrom`` at send time (never stored).

Failures raise :class:`~reconciler.notifiers.DeliveryError` with one line (the server's answer
code and text, never the credentials).
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from reconciler.notifiers import DeliveryError

DEFAULT_TIMEOUT = 10.0


def send(
    *,
    host: str,
    port: int,
    starttls: bool,
    sender: str,
    to: Sequence[str],
    subject: str,
    text: str,
    user: str | None = None,
    password: str | None = None,
    message_id: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    context: ssl.SSLContext | None = None,
) -> None:
    """Send one message; ``message_id`` (the delivery id) lets a mailbox spot a re-send."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    msg["Message-ID"] = (
        f"<{message_id}@reconciler>" if message_id else make_msgid(domain="reconciler")
    )
    msg.set_content(text)
    where = f"{host}:{port}"
    try:
        with smtplib.SMTP(host, port, timeout=timeout) as smtp:
            smtp.ehlo()
            if starttls:
                smtp.starttls(context=context or ssl.create_default_context())
                smtp.ehlo()
            if user is not None:
                smtp.login(user, password or "")
            smtp.send_message(msg)
    except smtplib.SMTPAuthenticationError as e:
        raise DeliveryError(f"{where} refused the login: {e.smtp_code}") from None
    except smtplib.SMTPResponseException as e:
        text_ = e.smtp_error.decode("utf-8", "replace") if isinstance(e.smtp_error, bytes) else ""
        raise DeliveryError(f"{where} answered {e.smtp_code} {text_}".strip()) from None
    except TimeoutError:
        raise DeliveryError(f"{where} did not answer within {timeout:.0f} s") from None
    except (OSError, smtplib.SMTPException) as e:
        raise DeliveryError(f"cannot send through {where}: {type(e).__name__}: {e}") from None
