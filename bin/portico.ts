#!/usr/bin/env node
import { main } from '../admin/cli/main.ts';

process.exitCode = await main(process.argv.slice(2), process.env);
