// The web apps' one script of their own, served at /static/app.js (the pages' policy allows no
// inline script).
// Times in the reader's locale; without JavaScript they stay in UTC (ISO 8601).
for (const time of document.querySelectorAll("time[datetime]")) {
  const date = new Date(time.dateTime);
  if (!isNaN(date)) time.textContent = date.toLocaleString();
}
