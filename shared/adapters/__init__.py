"""One module per upstream (Firestore, Google Calendar, Mercado Pago, Secret Manager, Cloud
Tasks, Google credentials and ID tokens), the error boundary and the clients.

The only code that imports a client library or builds a Firestore reference: everything
above talks to the platform's own values and errors.
"""
