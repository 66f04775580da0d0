// Package checkpoint captures a live process subtree into an image.
//
// The data flows one way: /proc and ptrace → this package → image types →
// bytes. A checkpoint runs in three steps (docs/DESIGN.md §4):
//
//  1. freeze: every task of the subtree is ptrace-seized and interrupted,
//     top down, and the tree is walked again until a walk finds no task
//     that is not yet stopped, so a task that forks or exits meanwhile can
//     never tear the image;
//  2. collect: pids at every namespace level, the tree (with what each
//     process shares with its parent, see sharing.go), per-task state;
//  3. thaw: every task is detached and runs on as before.
package checkpoint
