// Package certs is the receiver's certificate library (issue 19, DESIGN.md
// decision 10): the receiver is the only ACME client, nodes never talk to a
// CA. It keeps the ACME account and every host's certificate in the data dir
// (Store), obtains certificates through lego with HTTP-01 tokens handed to a
// ChallengeSpreader (Issuer), checks bundles an operator supplies
// (CheckBundle), says which hosts can have a public certificate (Eligible),
// and renews what is due, one host at a time (Renewer).
//
// receiver/apps wires it: settings, the ChallengeSpreader and Install over
// the nodes (package nodes), issuing after a deploy, the renewal job, and
// the operator's certs commands.
//
// Private keys never reach a log line, an error or a command line: they go
// from lego or the operator's stdin to 0600 files through
// internal/atomicfile, and the types holding them do not print them.
package certs
