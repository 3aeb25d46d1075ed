"""Badge enrolment: a badge's identity, registered here and bundled for its Pi."""
