"""The directory of participating payers, and requests to bring a missing payer on board.

A shared domain both portals use (ARCHITECTURE.md "Layers"): the member portal searches it
for former plans and invites missing ones, the plan-admin portal searches it and asks for
onboarding. It imports only ``hub``; the OnboardingRequest model is ``hub.models``'.
"""
