//! Email through lettre over SMTP (`SMTP_URL`, e.g. MailHog at `smtp://127.0.0.1:1025`): every
//! message has a plain-text and an HTML part; text that users supplied is HTML-escaped.

use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

/// One email to one person.
#[derive(Debug, Clone)]
pub struct Email<'a> {
    pub to_address: &'a str,
    pub to_name: &'a str,
    pub subject: &'a str,
    pub text: &'a str,
}

pub fn escape_html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// Each SMTP command waits at most this long for the server.
pub const SMTP_TIMEOUT_SECONDS: u64 = 10;

impl Mailer {
    pub fn new(smtp_url: &str, from: &str) -> anyhow::Result<Mailer> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp_url)?
            .timeout(Some(std::time::Duration::from_secs(SMTP_TIMEOUT_SECONDS)))
            .build();
        Ok(Mailer {
            transport,
            from: from.parse()?,
        })
    }

    pub async fn send(&self, email: &Email<'_>) -> anyhow::Result<()> {
        let to = Mailbox::new(Some(email.to_name.to_owned()), email.to_address.parse()?);
        let greeting = format!("Hi {},", email.to_name);
        let plain = format!("{greeting}\n\n{}\n\n- walleti\n", email.text);
        let html = format!(
            "<!doctype html><html><body><p>{}</p><p>{}</p><p>- walleti</p></body></html>",
            escape_html(&greeting),
            escape_html(email.text)
        );
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(email.subject)
            .multipart(MultiPart::alternative_plain_html(plain, html))?;
        self.transport.send(message).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_markup() {
        assert_eq!(
            super::escape_html("<b>Bob & \"Co\"</b>"),
            "&lt;b&gt;Bob &amp; &quot;Co&quot;&lt;/b&gt;"
        );
    }
}
