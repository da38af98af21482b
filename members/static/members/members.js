// USWDS error summaries: the member lands on the list of what to fix (USWDS "Form" guidance).
document.getElementById("error-summary")?.focus();
