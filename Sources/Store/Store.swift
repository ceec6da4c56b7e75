// Store module placeholder
