"""Send a member the link to allow a transfer their plan's opt-in could not make alone.

An opt-in a payer system posts at enrollment opens one request per former payer with no
member sign-in (issue 13; exchange/enrollment.py). A former payer that offers only
member-authorized access (SMART App Launch standalone) will share the records only once the
member signs in there, so the request waits for the member's authorization, as a member's
own request in the portal does, and the hub emails the member a link to the request's page
in their new plan's portal: they sign in there (the opt-in made their account, claimed by
member id at the first sign-in, members/sign_in.py) and start the sign-in at the former
payer from it.

``services`` owes the email in the opt-in's transaction (an outbox row); ``sending`` sends
one, once, and schedules the next try when the mail server fails; ``tasks`` runs it after
the commit and sweeps up what no task took.
"""
