"""What wattload writes for people: number formatting shared by every report, HTML reports and their charts."""
